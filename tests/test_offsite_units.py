"""Pure pieces of the off-site layer, as tables: destination parsing, error classes, backoff."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tasks.core.backoff import RetriesExhausted, RetryPolicy, retry_call
from tasks.core.errors import ConfigError
from tasks.storage.destination import is_remote_url, parse_destination, split_remote_url
from tasks.storage.transient import is_transient

S3_ENV = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret-value-123"}
AZ_ENV = {"AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct;AccountKey=a2V5a2V5a2V5;"}
GS_ENV = {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"}


@pytest.mark.parametrize(
    ("text", "env", "scheme", "root", "display"),
    [
        ("s3://my-bucket/chatbot-backups", S3_ENV, "s3", "my-bucket/chatbot-backups", None),
        ("s3://my-bucket", S3_ENV, "s3", "my-bucket", "s3://my-bucket"),
        ("s3://my-bucket//a/b/", S3_ENV, "s3", "my-bucket/a/b", "s3://my-bucket/a/b"),
        ("gs://my-bucket/x", GS_ENV, "gs", "my-bucket/x", None),
        ("az://chatbot-backups/daily", AZ_ENV, "az", "chatbot-backups/daily", None),
        ("backup@backup-server:/backups/chatbot", {}, "ssh", "/backups/chatbot", None),
        ("backup-server:/backups/chatbot", {}, "ssh", "/backups/chatbot", None),
        ("sftp://backup@host:2222/srv/b", {}, "ssh", "/srv/b", "backup@host:/srv/b"),
        ("/mnt/backup-nas/chatbot", {}, "file", "/mnt/backup-nas/chatbot", None),
        ("file:///mnt/nas/x", {}, "file", "/mnt/nas/x", "/mnt/nas/x"),
        ("./offsite", {}, "file", "/app/offsite", "/app/offsite"),
        ("./dir:with-colon", {}, "file", "/app/dir:with-colon", "/app/dir:with-colon"),
    ],
)
def test_destination_forms(
    text: str, env: dict[str, str], scheme: str, root: str, display: str | None
) -> None:
    dest = parse_destination(text, app_root=Path("/app"), env=env)
    assert (dest.scheme, dest.root) == (scheme, root)
    assert dest.display == (display or text)
    assert "secret-value-123" not in dest.display and "a2V5" not in repr(dest)


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("", {}, "empty"),
        ("s3://", S3_ENV, "needs a bucket name"),
        ("s3://UPPER/x", S3_ENV, "not a valid bucket name"),
        ("s3://b/../x", S3_ENV, "not allowed"),
        ("s3://key:secret@bucket/x", S3_ENV, "credentials in a s3:// URL"),
        ("az://ab/x", AZ_ENV, "not a valid container name"),
        ("az://has--double/x", AZ_ENV, "not a valid container name"),
        ("az://good-name/x", {}, "no Azure credentials"),
        ("az://good-name/x", {"AZURE_STORAGE_CONNECTION_STRING": "junk"}, "connection string"),
        ("gopher://x/y", {}, "unsupported scheme"),
        ("host:", {}, "needs a folder"),
        ("user@host:/", {}, "needs a folder"),
        ("sftp://user:pw@host/x", {}, "passwords in sftp:// URLs"),
        ("sftp://host:99999/x", {}, "bad SSH port"),
        ("s3://bkt/x", {"AWS_ACCESS_KEY_ID": "only-id"}, "incomplete"),
    ],
)
def test_malformed_destinations(text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_destination(text, env=env)


def test_storage_class_is_checked() -> None:
    dest = parse_destination("s3://bkt/x", s3_storage_class="standard_ia", env=S3_ENV)
    assert dest.options["storage_class"] == "STANDARD_IA"
    with pytest.raises(ConfigError, match="cannot be read back"):
        parse_destination("s3://bkt/x", s3_storage_class="GLACIER", env=S3_ENV)
    with pytest.raises(ConfigError, match="must be one of"):
        parse_destination("s3://bkt/x", s3_storage_class="CHEAP", env=S3_ENV)


def test_missing_ssh_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="OFFSITE_SSH_CONFIG"):
        parse_destination("host:/x", ssh_config=tmp_path / "none")


@pytest.mark.parametrize(
    ("url", "folder", "name"),
    [
        ("s3://b/p/full_backup_20251104_120000.tar.gz", "s3://b/p", "full_backup_20251104_120000.tar.gz"),
        ("s3://b/x.age", "s3://b", "x.age"),
        ("user@host:/backups/a.db.gz", "user@host:/backups", "a.db.gz"),
        ("/mnt/nas/a.db.gz", "/mnt/nas", "a.db.gz"),
    ],
)  # fmt: skip
def test_split_remote_url(url: str, folder: str, name: str) -> None:
    assert split_remote_url(url) == (folder, name)


@pytest.mark.parametrize("url", ["s3://b", "s3://", "nofolder"])
def test_split_remote_url_refuses(url: str) -> None:
    with pytest.raises(ConfigError):
        split_remote_url(url)


@pytest.mark.parametrize(
    ("text", "remote"),
    [
        ("s3://bkt/x", True),
        ("gs://b/x", True),
        ("az://c/x", True),
        ("sftp://h/x", True),
        ("user@host:/x", True),
        ("/data/backups/x.tar.gz", False),
        ("./x:y", False),
        ("file:///x", False),
        ("full_backup_20251104_120000.tar.gz", False),
    ],
)
def test_is_remote_url(text: str, remote: bool) -> None:
    assert is_remote_url(text) is remote


# --------------------------------------------------------------------------- transient


class ClientError(Exception):
    """Shaped like botocore's ClientError (only its `response` is looked at)."""

    def __init__(self, code: str, status: int) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


class HttpResponseError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(str(status))
        self.status_code = status


class HttpError(Exception):  # gcsfs
    def __init__(self, code: int) -> None:
        super().__init__(str(code))
        self.code = code


class ConnectionLost(Exception):  # asyncssh
    pass


class HostKeyNotVerifiable(Exception):  # asyncssh
    pass


def wrapped(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


def raised_while_handling(outer: BaseException, original: BaseException) -> BaseException:
    try:
        try:
            raise original
        except BaseException:
            raise outer  # noqa: B904  (an implicit __context__ is the point)
    except BaseException as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionResetError(), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (OSError(errno.ETIMEDOUT, "timed out"), True),
        (OSError(errno.EHOSTUNREACH, "no route"), True),
        (ClientError("SlowDown", 503), True),
        (ClientError("InternalError", 500), True),
        (ClientError("Throttling", 400), True),
        (ClientError("AccessDenied", 403), False),
        (ClientError("NoSuchBucket", 404), False),
        (ClientError("Whatever", 502), True),
        (ClientError("Whatever", 409), False),
        (HttpResponseError(503), True),
        (HttpResponseError(429), True),
        (HttpResponseError(403), False),
        (HttpError(500), True),
        (HttpError(404), False),
        (ConnectionLost(), True),
        (HostKeyNotVerifiable(), False),
        (PermissionError("denied"), False),
        (FileNotFoundError("no such bucket"), False),
        (OSError(errno.ENOSPC, "full"), False),
        (ValueError("bug"), False),
        # s3fs: OSError(EIO) whose cause is the real ClientError
        (wrapped(OSError(errno.EIO, "x"), ClientError("SlowDown", 503)), True),
        (wrapped(OSError(errno.EIO, "x"), ClientError("AccessDenied", 403)), False),
        # the outermost link that says something decides
        (wrapped(PermissionError("denied"), ConnectionResetError()), False),
        # a clean-up error after a dropped connection (s3fs aborting a multipart upload)
        (
            raised_while_handling(
                wrapped(FileNotFoundError("abort"), ClientError("NoSuchUpload", 404)),
                ConnectionResetError(),
            ),
            True,
        ),
        (raised_while_handling(PermissionError("denied"), ConnectionResetError()), True),
        (raised_while_handling(ConnectionResetError(), PermissionError("denied")), True),
        (raised_while_handling(PermissionError("denied"), ValueError("bug")), False),
    ],
)
def test_is_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


# --------------------------------------------------------------------------- backoff


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_until_success() -> None:
    clock = FakeClock()
    failures = [ConnectionResetError(), ConnectionResetError(), ConnectionResetError()]

    def flaky() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    result = retry_call(flaky, RetryPolicy(60, 1, 30), is_transient, sleep=clock.sleep, clock=clock)
    assert result == ("ok", 4)
    assert clock.sleeps == [1, 2, 4]


def test_backoff_is_capped_and_bounded_by_the_window() -> None:
    clock = FakeClock()
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError()

    policy = RetryPolicy(window_seconds=100, first_delay=1, max_delay=20)
    with pytest.raises(RetriesExhausted) as caught:
        retry_call(down, policy, is_transient, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [1, 2, 4, 8, 16, 20, 20, 20] == policy.delays()
    assert caught.value.attempts == calls == 9
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_permanent_errors_are_not_retried() -> None:
    clock = FakeClock()
    calls = 0

    def denied() -> None:
        nonlocal calls
        calls += 1
        raise PermissionError("AccessDenied")

    with pytest.raises(PermissionError):
        retry_call(denied, RetryPolicy(60), is_transient, sleep=clock.sleep, clock=clock)
    assert calls == 1 and clock.sleeps == []
