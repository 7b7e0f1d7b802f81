"""A tier added to tasks/core/tiers.py alone reaches everything that knows the tiers.

In a copy of the tree, one row is added to `TIER_TABLE` (a quarterly full backup, kept
730 days, copied off-site) and nothing else is edited. That copy then must show the new
tier in all five places: the deployments `serve` builds, the rendered `prefect.yaml`,
rotation (a real `backup-all --tier quarterly` run rotates with 730 days and leaves the
other tiers' backups alone), the monitor's rotation check and scheduled deployments, and
`--help` of the job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tasks.catalog.records import read_meta, write_meta
from tasks.core.naming import full_backup_name
from tests.conftest import Platform

REPO = Path(__file__).resolve().parent.parent

NEW_ROW = """
    Tier(
        "quarterly",
        "full",
        retention_days=730,
        cron="0 5 1 */3 *",
        description="Full backup each quarter, copied off-site, kept 730 days.",
        deployment_name="quarterly-offsite",
        offsite=True,
    ),
"""


@pytest.fixture(scope="module")
def tree_with_a_new_tier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiers")
    for package in ("flows", "tasks", "deployments"):
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    tiers = root / "tasks" / "core" / "tiers.py"
    text = tiers.read_text()
    end = text.index(")\n\nOTHER_SCHEDULES")
    tiers.write_text(text[:end] + NEW_ROW.lstrip("\n") + text[end:])
    return root


def in_copy(root: Path, code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=root,
        env={**os.environ, **env, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_copy_runs_its_own_tiers(tree_with_a_new_tier: Path) -> None:
    out = in_copy(tree_with_a_new_tier, "import tasks.core.tiers as t; print(t.__file__)")
    assert out.strip() == str(tree_with_a_new_tier / "tasks" / "core" / "tiers.py")


def test_serve_deployments_and_prefect_yaml_have_the_tier(tree_with_a_new_tier: Path) -> None:
    out = in_copy(
        tree_with_a_new_tier,
        """
        import json
        from deployments.build import build_deployments
        from deployments.render_prefect_yaml import render
        built = build_deployments("UTC")
        served = {
            f"{d.flow_name}/{d.name}": {
                "cron": d.schedules[0].schedule.cron, "parameters": d.parameters,
                "entrypoint": d.entrypoint,
            }
            for d in built.deployments
            if d.schedules  # the on-demand deployments have none
        }
        print(json.dumps({"served": served, "unavailable": built.unavailable,
                          "yaml": render("UTC")}))
        """,
    )
    found = json.loads(out)
    assert found["unavailable"] == {}
    expected = {"retention_days": 730, "offsite": True, "tier": "quarterly"}
    quarterly = found["served"]["backup-all/quarterly-offsite"]
    assert quarterly["cron"] == "0 5 1 */3 *"
    assert quarterly["parameters"] == expected
    assert "backup-all/monthly-offsite" in found["served"]  # the others are still there
    document = yaml.safe_load(found["yaml"])
    rows = {d["name"]: d for d in document["deployments"]}
    assert rows["quarterly-offsite"]["parameters"] == expected
    assert rows["quarterly-offsite"]["schedules"][0]["cron"] == "0 5 1 */3 *"
    assert rows["quarterly-offsite"]["entrypoint"] == rows["daily"]["entrypoint"]
    committed = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    assert len(document["deployments"]) == len(committed) + 1


def test_the_cli_help_names_the_tier(tree_with_a_new_tier: Path) -> None:
    for job in ("backup-all", "db-backup"):
        out = in_copy(
            tree_with_a_new_tier,
            f"""
            import contextlib, io
            from flows.cli import build_parser
            text = io.StringIO()
            with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
                build_parser().parse_args(["{job}", "--help"])
            print(text.getvalue())
            """,
        )
        assert "quarterly" in out, (job, out)


def seed(folder: Path, tier: str, ages_days: list[int], now: datetime) -> list[Path]:
    """Backups of `tier`, `ages_days` old (each tier at its own minute of the day)."""
    folder.mkdir(parents=True, exist_ok=True)
    minute = len(list(folder.glob("*.meta.json")))
    made = []
    for age in ages_days:
        name = full_backup_name(now - timedelta(days=age, minutes=minute + len(made)))
        path = folder / name
        path.write_bytes(b"backup " + name.encode())
        (folder / f"{name}.sha256").write_text(f"{'0' * 64}  {name}\n")
        write_meta(path, {"kind": "full", "tier": tier})
        made.append(path)
    return made


@pytest.mark.slow
def test_rotation_and_the_monitor_use_the_tiers_retention(
    tree_with_a_new_tier: Path, sqlite_platform: Platform
) -> None:
    now = datetime.now(UTC)
    backups = sqlite_platform.backups
    quarterly = seed(backups, "quarterly", [400, 410, 420, 430, 800], now)
    monthly = seed(backups, "monthly", [400, 410, 420, 430, 800], now)
    daily = seed(backups, "daily", [20, 21, 22, 23], now)

    # The monitor's rotation check, before the run: 800 days is past 730 + 1 for quarterly
    # (and past 365 + 1 for monthly); 400-430 days are within the quarterly retention.
    check = """
        import json, sys
        from datetime import UTC, datetime
        from pathlib import Path
        from tasks.catalog.records import list_backups
        from tasks.monitor.checks import SCHEDULED_DEPLOYMENTS, check_rotation
        folder, tier = Path(sys.argv[1]), sys.argv[2]
        records = [r for r in list_backups(folder) if r.tier == tier]
        finding = check_rotation(records, datetime.now(UTC), 7)
        print(json.dumps({"severity": finding.severity, "reason": finding.reason,
                          "tiers": sorted({r.tier for r in records}),
                          "scheduled": list(SCHEDULED_DEPLOYMENTS)}))
    """

    def rotation_finding(tier: str) -> dict[str, object]:
        code = textwrap.dedent(check).replace("sys.argv[1]", repr(str(backups)))
        code = code.replace("sys.argv[2]", repr(tier))
        return json.loads(in_copy(tree_with_a_new_tier, code))

    before = rotation_finding("quarterly")
    assert before["tiers"] == ["quarterly"]  # recognised as its own tier, not as daily
    assert before["severity"] == "warning" and quarterly[-1].name in str(before["reason"])
    assert "backup-all/quarterly-offsite" in before["scheduled"]  # type: ignore[operator]

    # A real run of the job with the new tier, from the copy.
    done = subprocess.run(
        [sys.executable, "-m", "flows", "backup-all", "--tier", "quarterly"],
        cwd=sqlite_platform.root,
        env={**os.environ, **sqlite_platform.env, "PYTHONPATH": str(tree_with_a_new_tier)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    made = [p for p in backups.glob("full_backup_*.tar.gz") if p not in quarterly + monthly + daily]
    assert len(made) == 1 and read_meta(made[0])["tier"] == "quarterly"
    # 730 days: only the 800-day quarterly backup went; 400-430 days stayed (a 7- or
    # 365-day retention would have removed them); monthly and daily were not looked at.
    assert [p.exists() for p in quarterly] == [True, True, True, True, False]
    assert all(p.exists() for p in monthly + daily)
    after = rotation_finding("quarterly")
    assert after["severity"] == "ok", after
