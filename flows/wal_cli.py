"""`chatbot-backup wal-push PATH` and `wal-fetch NAME DEST`: PostgreSQL's archive_command
and restore_command, without Prefect.

PostgreSQL runs them once per WAL segment (16 MB), and waits: `flows.cli.main` hands them
here before it imports anything heavy, and this module imports only the WAL archive
modules, the codec and python-dotenv — no Prefect, pydantic or psycopg (bench/pitr.py
measures the whole command per segment).

Configuration is read the way `tasks.core.settings` reads it — the environment first, then
`.env` in the application root (APP_ROOT, else the current directory, which for
PostgreSQL is its data directory), parsed by the same python-dotenv, names in any case —
but only the variables these two commands use: WAL_ARCHIVE_DIR (default
`$BACKUP_DIR/wal`), BACKUP_DIR, BACKUP_COMPRESSION, BACKUP_COMPRESSION_LEVEL and
WAL_PUSH_OFFSITE. With WAL_PUSH_OFFSITE=true the full settings are loaded (off-site
destinations, keys, encryption) and the push also goes to every off-site destination.
tests/test_pitr_units.py checks that this reader and `tasks.core.settings` agree.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from tasks.core.errors import BackupError, ConfigError

PROG = "chatbot-backup"
WAL_COMMANDS = ("wal-push", "wal-fetch")

PUSH_HELP = "archive one WAL file (PostgreSQL's archive_command: wal-push %%p); no Prefect run"
PUSH_DESCRIPTION = """\
Archive one WAL file into WAL_ARCHIVE_DIR: compressed with the project's codec, with a
sha256 sidecar, written under a hidden name, fsynced and then published; exit 0 only once
it is durable. Set as PostgreSQL's archive_command (see `chatbot-backup pitr-setup`):
  archive_command = 'env WAL_ARCHIVE_DIR=/data/backups/wal chatbot-backup wal-push %p'
A file already archived with the same content exits 0 (PostgreSQL re-sends a file whose
first push it did not hear back from); with other content it exits 6 and overwrites
nothing. Segments, .partial, .backup and .history files are accepted.

Exit status: 0 archived; 3 configuration (bad name or setting); 4 the file cannot be
read; 6 already archived with different content, or the archived copy is damaged;
8 the archive (or an off-site destination) cannot be written.

Reads: WAL_ARCHIVE_DIR (default $BACKUP_DIR/wal), BACKUP_DIR, BACKUP_COMPRESSION,
BACKUP_COMPRESSION_LEVEL, WAL_PUSH_OFFSITE, and with WAL_PUSH_OFFSITE=true also
OFFSITE_DESTINATION, its credentials and BACKUP_ENCRYPTION_RECIPIENTS; APP_ROOT/.env.
"""

FETCH_HELP = "restore one archived WAL file (PostgreSQL's restore_command: wal-fetch %%f %%p)"
FETCH_DESCRIPTION = """\
Restore archived WAL file NAME to DEST: decompressed into a hidden file next to DEST and
renamed to DEST only when the archived copy matches its sha256 sidecar. Set as
PostgreSQL's restore_command (pitr-restore writes it into the restored data directory):
  restore_command = 'env WAL_ARCHIVE_DIR=/data/backups/wal chatbot-backup wal-fetch %f %p'

With WAL_PUSH_OFFSITE=true, a file missing from WAL_ARCHIVE_DIR is fetched from the
first off-site destination (OFFSITE_DESTINATION, its wal/ folder) that holds it, checked
against its sidecar there (decrypted with BACKUP_ENCRYPTION_IDENTITY when it is .age).

Exit status: 0 restored; 1 NAME is not in the archive (nor off-site; PostgreSQL asks for
files that do not exist as a matter of course, e.g. the next timeline's history);
3 configuration; 6 the archived copy is damaged or unfinished; 8 DEST cannot be written
(or an off-site destination cannot be read).

Reads: WAL_ARCHIVE_DIR (default $BACKUP_DIR/wal), BACKUP_DIR, WAL_PUSH_OFFSITE and with it
OFFSITE_DESTINATION, its credentials and BACKUP_ENCRYPTION_IDENTITY; APP_ROOT/.env.
"""

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


def add_wal_commands(commands: Any) -> None:
    """The two subcommands, for the main parser's help (their real parser is below)."""
    push = commands.add_parser(
        "wal-push",
        help=PUSH_HELP,
        description=PUSH_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    push.add_argument("path", metavar="PATH", help="the WAL file (PostgreSQL's %%p)")
    fetch = commands.add_parser(
        "wal-fetch",
        help=FETCH_HELP,
        description=FETCH_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fetch.add_argument("name", metavar="NAME", help="the WAL file name (PostgreSQL's %%f)")
    fetch.add_argument("dest", metavar="DEST", help="where to write it (PostgreSQL's %%p)")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog=PROG)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    add_wal_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def is_wal_command(argv: Sequence[str]) -> bool:
    """Whether the command line names wal-push or wal-fetch (after any --debug)."""
    words = [a for a in argv if a != "--debug"]
    return bool(words) and words[0] in WAL_COMMANDS


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class WalConfig:
    """What wal-push and wal-fetch need, validated."""

    app_root: Path
    archive_dir: Path
    compression: str
    level: int | None
    push_offsite: bool


def read_config(environ: Mapping[str, str] | None = None) -> WalConfig:
    """The environment, then APP_ROOT/.env, for the variables above (ConfigError if wrong)."""
    env = {k.lower(): v for k, v in (os.environ if environ is None else environ).items()}
    root_text = env.get("app_root")
    root = Path(root_text).expanduser().resolve() if root_text else Path.cwd()
    values: dict[str, str] = {}
    env_file = root / ".env"
    if env_file.is_file():
        from dotenv import dotenv_values

        try:
            file_values = dotenv_values(env_file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{env_file}: cannot be read ({exc.strerror})") from None
        values = {k.lower(): v for k, v in file_values.items() if v is not None}
    values.update(env)

    def resolve(text: str) -> Path:
        path = Path(os.path.expanduser(text))
        return path if path.is_absolute() else root / path

    backups = resolve(values.get("backup_dir") or "/data/backups")
    wal_dir = values.get("wal_archive_dir")
    archive_dir = resolve(wal_dir) if wal_dir else backups / "wal"
    compression = (values.get("backup_compression") or "gzip").strip().lower()
    if compression not in ("gzip", "zstd"):
        raise ConfigError(f"BACKUP_COMPRESSION: must be 'gzip' or 'zstd', got {compression!r}")
    level_text = (values.get("backup_compression_level") or "").strip()
    try:
        level = int(level_text) if level_text else None
    except ValueError:
        raise ConfigError(
            f"BACKUP_COMPRESSION_LEVEL: must be a whole number, got {level_text!r}"
        ) from None
    offsite = (values.get("wal_push_offsite") or "false").strip().lower()
    if offsite not in _TRUE | _FALSE:
        raise ConfigError(f"WAL_PUSH_OFFSITE: must be true or false, got {offsite!r}")
    return WalConfig(root, archive_dir, compression, level, offsite in _TRUE)


# --------------------------------------------------------------------------- commands


def run_push(path: str, config: WalConfig) -> int:
    from tasks.pitr.archive import push_wal

    result = push_wal(Path(path), config.archive_dir, config.compression, config.level)
    if config.push_offsite:
        from tasks.core.settings import load_settings
        from tasks.pitr.archive_offsite import push_offsite

        push_offsite(load_settings(), result.path)
    return 0


def run_fetch(name: str, dest: str, config: WalConfig) -> int:
    from tasks.pitr.archive import WalMissingError, fetch_wal

    try:
        fetch_wal(name, config.archive_dir, Path(dest))
    except WalMissingError:
        if not config.push_offsite:
            raise
        # Not here, but pushed off-site too: the first destination that has it (the
        # full settings are loaded only on this path).
        from tasks.core.settings import load_settings
        from tasks.pitr.archive_offsite import fetch_offsite

        fetch_offsite(load_settings(), name, Path(dest), config.archive_dir)
    return 0


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    debug = args.debug or os.environ.get("CHATBOT_BACKUP_DEBUG") == "1"
    try:
        config = read_config()
        if args.command == "wal-push":
            return run_push(args.path, config)
        return run_fetch(args.name, args.dest, config)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        from tasks.core.redact import redact

        text = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
        print(f"{PROG}: {args.command}: {redact(' '.join(text.split()))}", file=sys.stderr)
        code = getattr(exc, "exit_code", 1) if isinstance(exc, BackupError) else 1
        return int(code) or 1
