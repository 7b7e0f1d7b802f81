"""The one settings model: environment and `.env` in the application root, validated once.

The environment wins over `.env`. Relative paths resolve against the application root
(`APP_ROOT`, or the current directory). Secrets are `SecretStr` and are registered with
`tasks.core.redact` as soon as they are loaded. Everything below the flows takes explicit
arguments; only the flows call `load_settings()`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tasks.core.errors import ConfigError
from tasks.core.folder_rules import check_folder_rules
from tasks.core.redact import redact, register_secret

DbType = Literal["sqlite", "postgres"]

# The longest retention any knob may ask for: 100 years. A cutoff that far back is still
# a date (99999999 days is not: `now - timedelta` overflows, and it did so only after the
# backup had been written). Hour thresholds are bounded by the same span.
MAX_RETENTION_DAYS = 36500
MAX_HOURS = MAX_RETENTION_DAYS * 24
Compression = Literal["gzip", "zstd"]
# The levels each codec accepts: gzip 0-9 (0-3 ISA-L, 4-9 zlib-ng), zstd 1-22 (its
# negative "fast" levels are left out: they save little over 1 and compress much less).
COMPRESSION_LEVELS: dict[str, tuple[int, int]] = {"gzip": (0, 9), "zstd": (1, 22)}

# Cloud and SDK secrets that never come through this model but must never be printed.
_SDK_SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "PGPASSWORD",
)


class Settings(BaseSettings):
    """Every variable of SPEC.md's configuration table, plus the tuning knobs."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    app_root: Path = Field(default_factory=Path.cwd)
    admin_db_type: str = "sqlite"
    admin_db_path: Path = Path("./data/admin.db")
    admin_database_url: SecretStr | None = None
    backup_dir: Path = Path("/data/backups")
    retention_days: int = 7
    uploads_dir: Path = Path("./data/uploads")
    app_data_dir: Path = Path("./data")
    config_files: str = ".env,config.php"
    offsite_destination: str | None = None

    alert_email: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    alert_from: str | None = None
    alert_slack_webhook: SecretStr | None = None
    alert_webhook: SecretStr | None = None

    metrics_file: Path | None = None
    wal_archive_dir: Path | None = None  # default: $BACKUP_DIR/wal (SPEC: PITR)
    prometheus_pushgateway: str | None = None
    backup_timezone: str = "UTC"

    backup_compression: str = "gzip"
    backup_compression_level: int | None = None
    backup_lock_timeout: float = 60.0
    backup_skip_unreadable: bool = False

    # Off-site copies (tasks.storage.destination, tasks.offsite) and client-side encryption.
    offsite_s3_storage_class: str | None = None  # e.g. STANDARD_IA; checked by the destination
    offsite_ssh_config: Path | None = None  # default: the user's ~/.ssh/config
    offsite_retention_days: int = Field(default=365, ge=1, le=MAX_RETENTION_DAYS)
    offsite_glacier_days: int = Field(default=30, ge=0, le=MAX_RETENTION_DAYS)
    offsite_expire_days: int = Field(default=365, ge=1, le=MAX_RETENTION_DAYS)
    offsite_retry_seconds: float = Field(default=300.0, gt=0)  # retry window per operation
    offsite_object_lock_days: int | None = Field(default=None, ge=1, le=MAX_RETENTION_DAYS)
    offsite_object_lock_mode: str = "GOVERNANCE"  # or COMPLIANCE; checked by the destination
    offsite_bandwidth_limit: str | None = None  # bytes per second, K/M/G suffixes
    backup_encryption_recipients: str | None = None  # age public keys, comma-separated
    backup_encryption_identity: Path | None = None  # age identity file, for restores

    # Monitoring thresholds (the guide's values) and alert delivery.
    monitor_max_age_hours: float = Field(default=25.0, gt=0, le=MAX_HOURS)
    monitor_min_count: int = Field(default=3, ge=0)
    monitor_size_drop_ratio: float = Field(default=0.5, ge=0, le=1)
    monitor_min_free_percent: float = Field(default=10.0, ge=0, le=100)
    monitor_free_space_multiple: float = Field(default=2.0, ge=0)
    monitor_rpo_database_hours: float = Field(default=6.0, gt=0, le=MAX_HOURS)
    monitor_rpo_files_hours: float = Field(default=24.0, gt=0, le=MAX_HOURS)
    monitor_rpo_logs_hours: float = Field(default=168.0, gt=0, le=MAX_HOURS)  # logs: weekly
    monitor_check_deployments: bool = True
    alert_timeout: float = Field(default=10.0, gt=0)

    # dr-drill: the guide's RTO table.
    rto_complete_failure_minutes: float = Field(default=240.0, gt=0, le=MAX_HOURS * 60)
    rto_database_corruption_minutes: float = Field(default=120.0, gt=0, le=MAX_HOURS * 60)

    # migrate-to-postgres: the target (a secret; the CLI's --target-url lands here).
    migrate_target_database_url: SecretStr | None = None

    # test-restore's (and dr-drill's) scratch databases: a role with CREATEDB, so the
    # app's own role needs none; default ADMIN_DATABASE_URL.
    restore_test_database_url: SecretStr | None = None

    # PostgreSQL point-in-time recovery (tasks/pitr/): WAL archive, base backups.
    pitr_enabled: bool = False
    pitr_database_url: SecretStr | None = (
        None  # a role with REPLICATION; default ADMIN_DATABASE_URL
    )
    wal_push_offsite: bool = False
    monitor_wal_max_age_minutes: float = Field(default=15.0, gt=0)
    # How PostgreSQL's archive/restore_command reaches this tool, e.g. a wrapper script;
    # default: the `chatbot-backup` of the running installation.
    pitr_command: str | None = None

    @field_validator("admin_db_type")
    @classmethod
    def _known_db_type(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("sqlite", "postgres"):
            raise ValueError(f"must be 'sqlite' or 'postgres', got {value!r}")
        return value

    @field_validator("retention_days", mode="before")  # "abc" gets our message, not pydantic's
    @classmethod
    def _positive_retention(cls, value: object) -> int:
        return check_retention_days(value)

    @field_validator("backup_compression")
    @classmethod
    def _known_compression(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("gzip", "zstd"):
            raise ValueError(f"must be 'gzip' or 'zstd', got {value!r}")
        return value

    @field_validator("smtp_port")
    @classmethod
    def _port_number(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError(f"must be a port number (1-65535), got {value}")
        return value

    @field_validator("backup_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; use an IANA name such as UTC or Europe/Berlin"
            ) from None
        return value.strip()

    @model_validator(mode="after")
    def _level_of_the_compression(self) -> Settings:
        # Checked here, not when the first block is compressed: a wrong level used to
        # surface as the codec's own "ValueError: Invalid initialization option", inside
        # the flow, after the dump had started.
        level = self.backup_compression_level
        if level is None:
            return self
        low, high = COMPRESSION_LEVELS[self.backup_compression]
        if not low <= level <= high:
            raise ValueError(
                f"BACKUP_COMPRESSION_LEVEL: {self.backup_compression} levels are "
                f"{low}-{high}, got {level}"
            )
        return self

    # -- derived values -------------------------------------------------------------
    def resolve(self, path: Path) -> Path:
        """A configured path, made absolute against the application root."""
        path = Path(os.path.expanduser(str(path)))
        return path if path.is_absolute() else (self.app_root / path)

    @property
    def db_type(self) -> DbType:
        return "postgres" if self.admin_db_type == "postgres" else "sqlite"

    @property
    def db_path(self) -> Path:
        return self.resolve(self.admin_db_path)

    @property
    def backups(self) -> Path:
        return self.resolve(self.backup_dir)

    @property
    def uploads(self) -> Path:
        return self.resolve(self.uploads_dir)

    @property
    def app_data(self) -> Path:
        return self.resolve(self.app_data_dir)

    @property
    def config_paths(self) -> list[Path]:
        names = [n.strip() for n in self.config_files.split(",") if n.strip()]
        return [self.resolve(Path(n)) for n in names]

    @property
    def metrics_path(self) -> Path:
        if self.metrics_file is not None:
            return self.resolve(self.metrics_file)
        return self.backups / "metrics" / "chatbot_backup.prom"

    @property
    def wal_archive(self) -> Path:
        """WAL_ARCHIVE_DIR, default `$BACKUP_DIR/wal` (flows/wal_cli.py reads it the same way)."""
        if self.wal_archive_dir is not None:
            return self.resolve(self.wal_archive_dir)
        return self.backups / "wal"

    @property
    def compression(self) -> Compression:
        return "zstd" if self.backup_compression == "zstd" else "gzip"

    def database_url(self) -> str:
        """The PostgreSQL URL (a secret). Raises ConfigError when it is not set."""
        if self.admin_database_url is None or not self.admin_database_url.get_secret_value():
            raise ConfigError(
                "ADMIN_DATABASE_URL is not set: ADMIN_DB_TYPE=postgres needs "
                "postgresql://user:password@host:port/db"
            )
        url = self.admin_database_url.get_secret_value()
        check_libpq_url("ADMIN_DATABASE_URL", url)
        if not _names_a_database(url):
            # libpq would fall back to a database named like the user (often `postgres`):
            # backups of the wrong database, restores into CREATE DATABASE "".
            raise ConfigError(
                "ADMIN_DATABASE_URL has no database name: write it after the host, "
                "postgresql://user:password@host:port/DATABASE"
            )
        return url

    def migration_target_url(self) -> str:
        """The migration's target URL (a secret). Raises ConfigError when it is not set."""
        url = self.migrate_target_database_url
        if url is None or not url.get_secret_value():
            raise ConfigError(
                "no migration target: pass --target-url postgresql://user:password@host:port/db "
                "(or set MIGRATE_TARGET_DATABASE_URL)"
            )
        return url.get_secret_value()

    def scratch_database_url(self) -> tuple[str, str] | None:
        """Where scratch databases are created, and the variable that says so:
        RESTORE_TEST_DATABASE_URL, else ADMIN_DATABASE_URL; None when neither is set."""
        for variable, url in (
            ("RESTORE_TEST_DATABASE_URL", self.restore_test_database_url),
            ("ADMIN_DATABASE_URL", self.admin_database_url),
        ):
            if url is not None and url.get_secret_value():
                return url.get_secret_value(), variable
        return None

    def pitr_url(self) -> str:
        """PITR_DATABASE_URL (a secret), else ADMIN_DATABASE_URL; ConfigError when neither."""
        if self.pitr_database_url is not None and self.pitr_database_url.get_secret_value():
            return self.pitr_database_url.get_secret_value()
        if self.admin_database_url is None or not self.admin_database_url.get_secret_value():
            raise ConfigError(
                "PITR_DATABASE_URL is not set (nor ADMIN_DATABASE_URL): point-in-time "
                "recovery needs a postgresql:// URL for a role with REPLICATION"
            )
        return self.admin_database_url.get_secret_value()


def check_retention_days(value: object) -> int:
    """Retention must be a whole number of days, from 1 to MAX_RETENTION_DAYS."""
    try:
        days = int(str(value).strip())
    except ValueError:
        raise ValueError(f"retention must be a whole number of days, got {value!r}") from None
    if days < 1:
        raise ValueError(f"retention must be at least 1 day, got {days}")
    if days > MAX_RETENTION_DAYS:
        raise ValueError(
            f"retention must be at most {MAX_RETENTION_DAYS} days (100 years), got {days}"
        )
    return days


def application_root() -> Path:
    root = os.environ.get("APP_ROOT")
    return Path(root).expanduser().resolve() if root else Path.cwd()


# Secrets that may also come from elsewhere (Prefect Secret blocks: flows.secret_blocks)
# when neither the environment nor `.env` sets them: the environment wins.
SECRET_FIELDS = ("admin_database_url", "smtp_password", "alert_slack_webhook", "alert_webhook")
SecretSource = Callable[[list[str]], dict[str, str]]
_secret_sources: list[SecretSource] = []


def add_secret_source(source: SecretSource) -> None:
    """Register `source(field names) -> {field: value}` for secrets left unset."""
    if source not in _secret_sources:
        _secret_sources.append(source)


def _fill_secrets(settings: Settings, overrides: dict[str, object]) -> dict[str, object]:
    missing = [
        name
        for name in SECRET_FIELDS
        if name not in overrides
        and (getattr(settings, name) is None or not getattr(settings, name).get_secret_value())
    ]
    found: dict[str, object] = {}
    for source in _secret_sources:
        if not missing:
            break
        try:
            values = source(list(missing))
        except Exception:  # a secret store that is down leaves the secret unset
            continue
        for name, value in values.items():
            if name in missing and value:
                found[name] = value
                missing.remove(name)
    return found


def load_settings(check_folders: bool = True, **overrides: object) -> Settings:
    """Read the environment and `$APP_ROOT/.env`, validate, register secrets.

    Raises ConfigError with one line naming the variable that is wrong, including a
    backup-side folder that overlaps a backed-up one (tasks.core.folder_rules);
    `check_folders=False` skips that one rule (a failure alert must still go out).
    """
    root = application_root()
    env_file = root / ".env"
    try:
        settings = Settings(
            _env_file=env_file if env_file.is_file() else None,  # type: ignore[call-arg]
            app_root=root,
            **overrides,  # type: ignore[arg-type]
        )
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    found = _fill_secrets(settings, overrides) if _secret_sources else {}
    if found:
        for value in found.values():
            register_secret(str(value))
        try:
            settings = Settings(
                _env_file=env_file if env_file.is_file() else None,  # type: ignore[call-arg]
                app_root=root,
                **{**overrides, **found},  # type: ignore[arg-type]
            )
        except ValidationError as exc:
            raise ConfigError(_one_line(exc)) from None
    for secret in (
        settings.admin_database_url,
        settings.pitr_database_url,
        settings.restore_test_database_url,
        settings.smtp_password,
        settings.alert_slack_webhook,
        settings.alert_webhook,
    ):
        if secret is not None:
            register_secret(secret.get_secret_value())
    # The migration target's URL is shown (user@host/db) in its report: only its password
    # is the secret.
    for url in (
        settings.admin_database_url,
        settings.migrate_target_database_url,
        settings.pitr_database_url,
        settings.restore_test_database_url,
    ):
        if url is not None:
            _register_url_password(url.get_secret_value())
    for name in _SDK_SECRET_VARIABLES:
        register_secret(os.environ.get(name))
    if settings.db_type == "postgres":
        settings.database_url()  # fail early and clearly when it is missing
    if check_folders:
        check_folder_rules(settings)  # before any job reads, writes or locks anything
    if settings.backups.exists() and not settings.backups.is_dir():
        raise ConfigError(f"BACKUP_DIR: {settings.backups} is not a folder")
    return settings


_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def check_libpq_url(variable: str, url: str) -> None:
    """ConfigError, without the URL (it holds the password), for a URL libpq would refuse
    or misread — found now, not by the first connection inside the flow."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigError(f"{variable} is not a valid postgresql:// URL") from None
    if "@" in str(params.get("host") or ""):
        # user:pa@ss@host: libpq ends the password at the first '@', so the rest of the
        # password becomes the host, and every connection error would print it.
        raise ConfigError(f"{variable}: write a '@' in the user name or password as %40")
    sslmode = params.get("sslmode")
    if sslmode is not None and str(sslmode) not in _SSL_MODES:
        raise ConfigError(f"{variable}: sslmode must be one of {', '.join(_SSL_MODES)}")


def _names_a_database(url: str) -> bool:
    """Whether a libpq URL or keyword string sets `dbname` (a malformed one is reported
    where it is parsed, by tasks.sources.postgres.parse_database_url)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        return bool(str(conninfo_to_dict(url).get("dbname") or "").strip())
    except psycopg.ProgrammingError:
        return True


def _register_url_password(url: str) -> None:
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        register_secret(password)
        register_secret(unquote(password))


def _one_line(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        # A check across fields (a model validator) names its variables itself.
        parts.append(f"{field.upper()}: {message}" if field else message)
    return redact("; ".join(parts))
