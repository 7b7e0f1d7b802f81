"""Configuration: environment and .env, defaults, clear one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.errors import ConfigError
from tasks.core.settings import load_settings


def test_defaults_resolve_against_app_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ROOT", str(tmp_path))
    s = load_settings()
    assert s.db_type == "sqlite"
    assert s.db_path == tmp_path / "data" / "admin.db"
    assert s.backups == Path("/data/backups")
    assert s.retention_days == 7
    assert s.uploads == tmp_path / "data" / "uploads"
    assert s.app_data == tmp_path / "data"
    assert s.config_paths == [tmp_path / ".env", tmp_path / "config.php"]
    assert s.metrics_path == Path("/data/backups/metrics/chatbot_backup.prom")
    assert s.backup_timezone == "UTC"


def test_dotenv_is_read_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "RETENTION_DAYS=30\nBACKUP_DIR=backups\nADMIN_DB_PATH=db/x.db\nOTHER_APP_VAR=1\n"
    )
    monkeypatch.setenv("APP_ROOT", str(tmp_path))
    s = load_settings()
    assert s.retention_days == 30
    assert s.backups == tmp_path / "backups"
    assert s.db_path == tmp_path / "db" / "x.db"
    monkeypatch.setenv("RETENTION_DAYS", "3")
    assert load_settings().retention_days == 3


def test_current_directory_is_the_default_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("ADMIN_DB_TYPE=sqlite\nRETENTION_DAYS=11\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().retention_days == 11


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ADMIN_DB_TYPE": "mysql"}, "ADMIN_DB_TYPE"),
        ({"ADMIN_DB_TYPE": "postgres"}, "ADMIN_DATABASE_URL"),
        ({"RETENTION_DAYS": "0"}, "RETENTION_DAYS"),
        ({"RETENTION_DAYS": "-1"}, "RETENTION_DAYS"),
        ({"RETENTION_DAYS": "abc"}, "RETENTION_DAYS"),
        ({"BACKUP_COMPRESSION": "lz4"}, "BACKUP_COMPRESSION"),
    ],
)
def test_bad_settings_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    monkeypatch.setenv("APP_ROOT", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert needle in message and "\n" not in message


def test_secret_is_masked_in_repr_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_ROOT", str(tmp_path))
    monkeypatch.setenv("ADMIN_DB_TYPE", "postgres")
    monkeypatch.setenv("ADMIN_DATABASE_URL", "postgresql://u:Sup3r%40Secret@localhost/db")
    monkeypatch.setenv("RETENTION_DAYS", "nope")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "Sup3r" not in str(caught.value)
    monkeypatch.setenv("RETENTION_DAYS", "2")
    s = load_settings()
    assert "Sup3r" not in repr(s) and "Sup3r" not in str(s.model_dump())
