"""Bad input, collected: every case runs the real `chatbot-backup` and must end with one
clear line on stderr, the documented exit code, and nothing lost.

"Nothing lost": every file of the installation and of BACKUP_DIR is byte for byte (and
mode for mode) as it was; no new file appears except, where a case says so, a complete
backup with a sidecar that verifies. The cases are built one by one on copies of one
installation, then run a few at a time (each run is mostly Prefect's import time).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.core.naming import db_backup_name, full_backup_name, parse_backup_name
from tests.conftest import _PRODUCT_VARIABLES, BIN, make_sqlite_db
from tests.support.services import PasswordPostgres, S3Service, free_port, moto_s3
from tests.test_db_restore import NOT_DATA, flip_byte, tree_state
from tests.test_restore_all import (
    _device,
    _file,
    _link,
    evil_archive,
    populate,
    rewrite_archive,
)

ABSOLUTE_MEMBER = "/tmp/chatbot-bad-input-absolute.txt"  # noqa: S108 (must not appear)
# Many real CLI runs: long on a loaded host, so a wider timeout than the default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

WRONG_PASSWORD = "Wr0ng:p@ss/w%rd'\"Z"


@dataclass
class Box:
    """One case's own copy of the installation."""

    root: Path
    backups: Path
    tmp: Path
    env: dict[str, str]
    watch: list[Path] = field(default_factory=list)  # more folders that must not change

    @property
    def db(self) -> Path:
        return self.root / "data" / "admin.db"

    def db_backup(self) -> Path:
        [path] = sorted(self.backups.glob("admin_sqlite_*.db.gz"))
        return path

    def full_backup(self) -> Path:
        [path] = sorted(self.backups.glob("full_backup_*.tar.gz"))
        return path


@dataclass(frozen=True)
class Case:
    args: Callable[[Box], list[str]] | list[str]
    code: int
    message: str  # a regular expression the one stderr line must match
    prepare: Callable[[Box], None] | None = None
    new_backup_allowed: bool = False  # the local backup may be made before the failure
    never_in_stderr: tuple[str, ...] = ()


# -- case builders ------------------------------------------------------------------


def _env(**values: str) -> Callable[[Box], None]:
    def prepare(box: Box) -> None:
        box.env.update(values)

    return prepare


def _unreachable_postgres(box: Box) -> None:
    box.env.update(
        ADMIN_DB_TYPE="postgres",
        ADMIN_DATABASE_URL=f"postgresql://postgres:secret@127.0.0.1:{free_port()}/admin",
    )


def _broken_sqlite(box: Box) -> None:
    box.db.write_bytes(b"this is the operator's shopping list, not SQLite\n" * 200)


def _missing_sqlite(box: Box) -> None:
    box.db.unlink()


def _immutable_backup_dir(box: Box) -> None:
    # Root ignores permission bits; the immutable flag stops even root.
    subprocess.run(["chattr", "+i", str(box.backups)], check=True)


def _backup_dir_under_a_file(box: Box) -> None:
    box.env["BACKUP_DIR"] = str(box.root / "config.php" / "backups")


def _restore(job: str, make: Callable[[Box], Path]) -> Callable[[Box], list[str]]:
    def args(box: Box) -> list[str]:
        return [job, "--yes", str(make(box))]

    return args


def _a_directory(box: Box) -> Path:
    path = box.backups / "admin_sqlite_20250101_000000.db.gz"
    path.mkdir()
    return path


def _not_gzip(box: Box) -> Path:
    path = box.backups / "admin_sqlite_20250101_000000.db.gz"
    path.write_text("SELECT 'this was never compressed';\n")
    return path


def _gzip_of_garbage(box: Box) -> Path:
    path = box.backups / "admin_sqlite_20250101_000000.db.gz"
    path.write_bytes(gzip.compress(os.urandom(64 * 1024)))
    return path


def _truncated_full(box: Box) -> Path:
    archive = box.full_backup()
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    Path(f"{archive}.sha256").unlink()  # so the archive itself must tell
    return archive


def _flipped_db(box: Box) -> Path:
    artifact = box.db_backup()
    flip_byte(artifact)
    return artifact


def _flipped_full_no_sidecar(box: Box) -> Path:
    archive = box.full_backup()
    flip_byte(archive)
    Path(f"{archive}.sha256").unlink()
    return archive


def _lying_sidecar(box: Box) -> Path:
    artifact = box.db_backup()
    Path(f"{artifact}.sha256").write_text(f"{'0' * 64}  {artifact.name}\n")
    return artifact


def _manifest_not_json(box: Box) -> Path:
    def edit(top: Path) -> None:
        (top / "MANIFEST.json").write_text("{this is not JSON")

    target = box.tmp / "full_backup_20250101_000000.tar.gz"
    return rewrite_archive(box.full_backup(), target, edit, box.tmp)


def _evil(add: Callable[[tarfile.TarFile], None]) -> Callable[[Box], Path]:
    def make(box: Box) -> Path:
        return evil_archive(box.tmp / "full_backup_20250101_000000.tar.gz", add)

    return make


def _impossible_date(box: Box) -> Path:
    """A good backup renamed to 30 February: no backup of ours carries that name."""
    artifact = box.db_backup()
    bogus = box.backups / "admin_sqlite_20250230_120000.db.gz"
    shutil.copy2(artifact, bogus)
    sha = hashlib.sha256(bogus.read_bytes()).hexdigest()
    Path(f"{bogus}.sha256").write_text(f"{sha}  {bogus.name}\n")
    return bogus


def _only_future_backups(box: Box) -> None:
    """Clocks went wrong: every backup claims to come from next year."""
    later = datetime.now(UTC) + timedelta(days=365)
    for path in list(box.backups.iterdir()):
        parsed = parse_backup_name(path.name.split(".sha256")[0].split(".meta.json")[0])
        if parsed is None or not path.is_file():
            continue
        stamp = later - (datetime.now(UTC) - parsed.created_at)
        new = (
            db_backup_name("sqlite", stamp) if parsed.kind == "db" else full_backup_name(stamp)
        )
        path.rename(path.with_name(path.name.replace(parsed.name, new)))
    # A clock that is wrong writes the wrong name into the sidecar too (sha256sum -c works).
    for sidecar in box.backups.glob("*.sha256"):
        name = sidecar.name.removesuffix(".sha256")
        digest = sidecar.read_text().split()[0]
        sidecar.write_text(f"{digest}  {name}\n")


def _missing_bucket(s3: S3Service) -> Callable[[Box], None]:
    def prepare(box: Box) -> None:
        box.env.update(
            OFFSITE_DESTINATION="s3://no-such-bucket-here/chatbot",
            AWS_ACCESS_KEY_ID=s3.key,
            AWS_SECRET_ACCESS_KEY=s3.secret,
            AWS_ENDPOINT_URL=s3.endpoint_url,
            AWS_DEFAULT_REGION=s3.region,
            OFFSITE_RETRY_SECONDS="5",
        )

    return prepare


def _wrong_password(pg: PasswordPostgres) -> Callable[[Box], None]:
    return _env(ADMIN_DB_TYPE="postgres", ADMIN_DATABASE_URL=pg.url("postgres", WRONG_PASSWORD))


def cases(pg: PasswordPostgres, s3: S3Service) -> dict[str, Case]:
    refused = r"refused|outside|not allowed|unsafe"
    return {
        "unknown ADMIN_DB_TYPE": Case(
            ["db-backup"], 3, r"ADMIN_DB_TYPE.*'sqlite' or 'postgres'", _env(ADMIN_DB_TYPE="mysql")
        ),
        "unreachable PostgreSQL": Case(
            ["db-backup"], 4, r"cannot connect to PostgreSQL", _unreachable_postgres, (), ("secret",)
        ),
        "wrong password": Case(
            ["db-backup"],
            4,
            r"password authentication failed",
            _wrong_password(pg),
            never_in_stderr=(WRONG_PASSWORD, "Wr0ng"),
        ),
        "missing SQLite file": Case(["db-backup"], 3, r"admin\.db.*does not exist", _missing_sqlite),
        "SQLite file that is not a database": Case(
            ["db-backup"], 4, r"admin\.db.*not .*database", _broken_sqlite
        ),
        "BACKUP_DIR immutable": Case(
            ["db-backup"], 8, r"backup folder .* cannot be written", _immutable_backup_dir
        ),
        "BACKUP_DIR under a regular file": Case(
            ["backup-all"], 8, r"config\.php/backups cannot be written", _backup_dir_under_a_file
        ),
        "backup path is a directory": Case(_restore("db-restore", _a_directory), 6, r"directory"),
        "not gzip": Case(_restore("db-restore", _not_gzip), 6, r"not a gzip"),
        "gzip of garbage": Case(_restore("db-restore", _gzip_of_garbage), 6, r"SQLite|database"),
        "truncated archive": Case(_restore("restore-all", _truncated_full), 6, r"truncated"),
        "flipped byte": Case(
            _restore("db-restore", _flipped_db), 6, r"damaged|sha256 does not match"
        ),
        "flipped byte, no sidecar": Case(
            _restore("restore-all", _flipped_full_no_sidecar), 6, r"damaged|truncated|sha256"
        ),
        "sidecar that lies": Case(
            _restore("db-restore", _lying_sidecar), 6, r"sha256 does not match"
        ),
        "manifest that is not JSON": Case(
            _restore("restore-all", _manifest_not_json), 6, r"MANIFEST\.json.*not valid JSON"
        ),
        "archive member ../": Case(
            _restore("restore-all", _evil(_file("full_backup_20250101_000000/../../escape.txt"))),
            6,
            refused,
        ),
        "archive member absolute": Case(
            _restore("restore-all", _evil(_file(ABSOLUTE_MEMBER))),
            6,
            refused,
        ),
        "archive member symlink out": Case(
            _restore(
                "restore-all", _evil(_link("full_backup_20250101_000000/uploads/x", "/etc/passwd"))
            ),
            6,
            refused,
        ),
        "archive member device": Case(
            _restore("restore-all", _evil(_device("full_backup_20250101_000000/data/null"))),
            6,
            refused,
        ),
        "backup name with a date that does not exist": Case(
            _restore("db-restore", _impossible_date), 6, r"20250230_120000 is not a real date"
        ),
        "retention 0": Case(["db-backup", "--retention-days", "0"], 2, r"at least 1 day"),
        "retention -1": Case(["db-backup", "--retention-days=-1"], 2, r"at least 1 day"),
        "retention abc": Case(["db-backup", "--retention-days", "abc"], 2, r"whole number"),
        "RETENTION_DAYS=abc": Case(
            ["backup-all"], 3, r"RETENTION_DAYS.*whole number", _env(RETENTION_DAYS="abc")
        ),
        "RETENTION_DAYS=0": Case(
            ["db-backup"], 3, r"RETENTION_DAYS.*at least 1", _env(RETENTION_DAYS="0")
        ),
        "malformed OFFSITE_DESTINATION": Case(
            ["db-backup", "--offsite"], 3, r"OFFSITE_DESTINATION", _env(OFFSITE_DESTINATION="s3://")
        ),
        "off-site bucket that does not exist": Case(
            ["db-backup", "--offsite"],
            8,
            r"no-such-bucket-here",
            _missing_bucket(s3),
            new_backup_allowed=True,
            never_in_stderr=(s3.endpoint_url + "?",),
        ),
        "backup files with future timestamps": Case(
            ["monitor"], 2, r"CRITICAL.*latest-age.*in the future", _only_future_backups
        ),
    }


# -- the installation every case copies ----------------------------------------------


def base_env(root: Path, backups: Path, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PRODUCT_VARIABLES}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    env.update(
        APP_ROOT=str(root),
        BACKUP_DIR=str(backups),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        BACKUP_LOCK_TIMEOUT="5",
        MONITOR_CHECK_DEPLOYMENTS="false",
    )
    return env


def run_cli(args: list[str], root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "chatbot-backup"), *args],
        cwd=root,
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory, prefect_api_url: str) -> Path:
    """An installation with uploads, config, data, a database, one db and one full backup."""
    base = tmp_path_factory.mktemp("golden")
    root, backups = base / "app", base / "backups"
    make_sqlite_db(root / "data" / "admin.db")
    (root / "data" / "uploads").mkdir(parents=True, exist_ok=True)
    populate(root)
    env = base_env(root, backups, prefect_api_url)
    # Both at once, into two folders (one folder would make the second wait for the lock).
    second = base / "backups-full"
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [
            pool.submit(run_cli, ["db-backup"], root, env),
            pool.submit(run_cli, ["backup-all"], root, {**env, "BACKUP_DIR": str(second)}),
        ]
        for job in jobs:
            assert job.result().returncode == 0, job.result().stderr
    for path in second.iterdir():
        if path.is_file() and parse_backup_name(path.name.split(".sha256")[0].split(".meta")[0]):
            path.rename(backups / path.name)
    shutil.rmtree(second)
    return base


@dataclass
class Outcome:
    box: Box
    case: Case
    before: dict[str, str]
    done: subprocess.CompletedProcess[str]


def _copy(golden: Path, target: Path, api_url: str) -> Box:
    shutil.copytree(golden, target, symlinks=True)
    tmp = target / "scratch"
    tmp.mkdir()
    return Box(
        root=target / "app",
        backups=target / "backups",
        tmp=tmp,
        env=base_env(target / "app", target / "backups", api_url),
    )


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Service]:
    with moto_s3() as service:
        yield service


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest,
    golden: Path,
    tmp_path_factory: pytest.TempPathFactory,
    prefect_api_url: str,
    password_pg: PasswordPostgres,
    s3: S3Service,
) -> Iterator[dict[str, Outcome]]:
    """Build every case on its own copy, then run them three at a time."""
    table = cases(password_pg, s3)
    selected = {  # only the cases this session runs (`-k` picks a few)
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_bad_input_is_one_clear_line_and_loses_nothing"
    }
    table = {name: case for name, case in table.items() if name in selected}
    work = tmp_path_factory.mktemp("cases")
    prepared: dict[str, tuple[Box, list[str], dict[str, str]]] = {}
    try:
        for index, (name, case) in enumerate(table.items()):
            box = _copy(golden, work / f"case{index:02d}", prefect_api_url)
            if case.prepare is not None:
                case.prepare(box)
            args = case.args(box) if callable(case.args) else list(case.args)
            prepared[name] = (box, args, tree_state(box.root, box.backups, box.tmp))
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = {
                name: pool.submit(run_cli, args, box.root, box.env)
                for name, (box, args, _) in prepared.items()
            }
            results = {
                name: Outcome(prepared[name][0], table[name], prepared[name][2], f.result())
                for name, f in futures.items()
            }
        yield results
    finally:
        for box, _, _ in prepared.values():
            subprocess.run(["chattr", "-i", str(box.backups)], capture_output=True)


CASE_NAMES = [
    "unknown ADMIN_DB_TYPE",
    "unreachable PostgreSQL",
    "wrong password",
    "missing SQLite file",
    "SQLite file that is not a database",
    "BACKUP_DIR immutable",
    "BACKUP_DIR under a regular file",
    "backup path is a directory",
    "not gzip",
    "gzip of garbage",
    "truncated archive",
    "flipped byte",
    "flipped byte, no sidecar",
    "sidecar that lies",
    "manifest that is not JSON",
    "archive member ../",
    "archive member absolute",
    "archive member symlink out",
    "archive member device",
    "backup name with a date that does not exist",
    "retention 0",
    "retention -1",
    "retention abc",
    "RETENTION_DAYS=abc",
    "RETENTION_DAYS=0",
    "malformed OFFSITE_DESTINATION",
    "off-site bucket that does not exist",
    "backup files with future timestamps",
]


def _new_files_are_complete_backups(before: dict[str, str], after: dict[str, str]) -> None:
    for path in set(after) - set(before):
        name = Path(path).name
        if after[path] == "dir" or name in NOT_DATA:
            continue
        base = name.removesuffix(".sha256").removesuffix(".meta.json")
        assert parse_backup_name(base) is not None, f"unexpected new file {path}"
        if name == base:  # the backup itself: its sidecar must say what it holds
            sidecar = Path(f"{path}.sha256").read_text().split()[0]
            assert sidecar == hashlib.sha256(Path(path).read_bytes()).hexdigest(), path


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_one_clear_line_and_loses_nothing(
    outcomes: dict[str, Outcome], name: str
) -> None:
    outcome = outcomes[name]
    done, case, box = outcome.done, outcome.case, outcome.box
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), (
        f"exit {done.returncode}; stderr is not one line:\n{done.stderr}\nstdout:\n{done.stdout}"
    )
    line = lines[0]
    assert "Traceback" not in done.stderr and line.startswith("chatbot-backup"), line
    assert re.search(case.message, line), line
    assert done.returncode == case.code, f"exit {done.returncode}: {line}"
    for secret in case.never_in_stderr:
        assert secret not in done.stderr, f"{secret!r} printed: {line}"
    after = tree_state(box.root, box.backups, box.tmp)
    changed = {p for p in outcome.before if after.get(p) != outcome.before[p]}
    assert not changed, f"changed or lost: {sorted(changed)}"
    if case.new_backup_allowed:
        _new_files_are_complete_backups(outcome.before, after)
    else:
        new = {p for p in set(after) - set(outcome.before) if Path(p).name not in NOT_DATA}
        assert not new, f"new files: {sorted(new)}"
    assert not Path(ABSOLUTE_MEMBER).exists()
    escaped = [*box.root.parent.rglob("escape.txt"), *box.root.parent.parent.glob("escape.txt")]
    assert not escaped, f"a member escaped the target: {escaped}"


def test_every_case_is_in_the_table(
    password_pg: PasswordPostgres, s3: S3Service
) -> None:
    assert sorted(cases(password_pg, s3)) == sorted(CASE_NAMES)
    assert len(CASE_NAMES) >= 20
