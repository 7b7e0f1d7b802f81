"""The house's rules hold, and the import-linter contract fails when one is broken.

The contract is `[tool.importlinter]` in pyproject.toml (docs/dev/architecture.md draws
it); `scripts/test` runs `lint-imports` in its lint step. Each broken rule below is made
in a copy of the tree, so `lint-imports` there must say BROKEN and exit non-zero.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first, so the copy's packages are analysed, not the installed checkout's.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("house")
    for package in ("flows", "tasks", "deployments"):
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_contract_holds_here() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


BREAKS = {
    # a lower wing importing a higher one
    "upward": ("tasks/core/errors.py", "import tasks.monitor.alerts", "the wings only import"),
    # two wings of one rung are independent
    "sideways": ("tasks/restore/markers.py", "import tasks.offsite.copy", "the wings only import"),
    # prefect outside the @task wrappers, flows and deployments
    "prefect": ("tasks/retention/plan.py", "import prefect", "import prefect"),
    # the storage layer learning about backups
    "storage": ("tasks/storage/transient.py", "import tasks.core.naming", "storage knows nothing"),
    # deployments importing a flow module
    "top": ("deployments/timetable.py", "import flows.reporting", "flows over deployments"),
    # a new wing nobody placed in the layers
    "unplaced": ("tasks/newwing/__init__.py", "", "the wings only import"),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_the_contract_fails_when_a_rule_breaks(tree_copy: Path, case: str) -> None:
    relative, line, contract = BREAKS[case]
    target = tree_copy / relative
    existed = target.exists()
    before = target.read_text() if existed else None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text((before or "") + f"\n{line}\n")
    try:
        done = lint_imports(tree_copy)
    finally:
        if before is None:
            shutil.rmtree(target.parent)
        else:
            target.write_text(before)
    assert done.returncode != 0, done.stdout
    broken = [row for row in done.stdout.splitlines() if " BROKEN" in row]
    assert any(contract in row for row in broken), done.stdout


def calls_of(path: Path, name: str) -> list[int]:
    tree = ast.parse(path.read_text())
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == name)
            or (isinstance(node.func, ast.Attribute) and node.func.attr == name)
        )
    ]


def test_only_flows_and_the_commands_load_settings() -> None:
    # Everything below the flows takes explicit arguments (STYLE.md, Config); the
    # commands that are no flow (`serve`, `schedule`) live in deployments/.
    found = {
        str(path.relative_to(REPO)): lines
        for path in sorted((REPO / "tasks").rglob("*.py"))
        if (lines := calls_of(path, "load_settings"))
    }
    assert found == {}
