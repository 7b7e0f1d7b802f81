"""`from flows import db_backup` gives the flow, and a CLI run imports only its own flow.

flows/__init__.py imports the flows on first use (issue 8: start-up time). Each case
runs in a fresh interpreter, because what a test process has already imported would
hide what a real `chatbot-backup` process imports.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import flows


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_every_exported_name_is_the_flow_or_result_it_names() -> None:
    out = run_python(
        """
        from prefect.flows import Flow
        import flows
        kinds = {name: type(getattr(flows, name)).__name__ for name in flows.__all__}
        for name, kind in sorted(kinds.items()):
            print(name, kind)
        """
    )
    kinds = dict(line.split() for line in out.splitlines())
    assert set(kinds) == set(flows.__all__)
    for name in (
        "backup_all",
        "db_backup",
        "db_restore",
        "monitor_backups",
        "offsite_setup",
        "offsite_sync",
        "restore_all",
        "test_restore",
    ):
        assert kinds[name] == "Flow", (name, kinds[name])
    for name in ("BackupAllResult", "DbBackupResult", "RestoreResult", "TestRestoreResult"):
        assert kinds[name] == "type", (name, kinds[name])


def test_the_flow_wins_over_its_module_once_the_module_was_imported() -> None:
    # `import flows.db_backup_flow` makes the import system set the package attribute to the
    # module; `from flows import db_backup` must still give the flow.
    out = run_python(
        """
        import flows.db_backup_flow, flows.backup_all_flow, flows.test_restore_flow
        import flows
        from flows import backup_all, db_backup, test_restore
        print(type(flows.db_backup).__name__, type(db_backup).__name__,
              type(backup_all).__name__, type(test_restore).__name__)
        """
    )
    assert out == "Flow Flow Flow Flow"


def test_the_cli_imports_only_the_flow_it_runs() -> None:
    out = run_python(
        """
        import sys
        import flows.cli
        before = sorted(m for m in sys.modules if m.startswith("flows."))
        from flows import db_backup
        after = sorted(m for m in sys.modules if m.startswith("flows."))
        print(" ".join(before)); print(" ".join(after))
        """
    )
    before, after = (line.split() for line in out.splitlines())
    assert before == ["flows.cli"]
    assert "flows.db_backup_flow" in after
    for other in (
        "flows.backup_all_flow",
        "flows.db_restore_flow",
        "flows.restore_all_flow",
        "flows.test_restore_flow",
        "flows.monitor_flow",
    ):
        assert other not in after, other


def test_no_module_of_flows_takes_an_exported_name() -> None:
    # flows/__init__.py's __getattr__ is only asked for a name the package does not hold:
    # a module flows/db_backup.py, once imported, would be the attribute instead of the flow.
    from pathlib import Path

    folder = Path(flows.__file__).parent
    modules = {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if p.is_dir()}
    assert not modules & set(flows.__all__), sorted(modules & set(flows.__all__))
