"""Client-side encryption in the age format, so the standard `age -d` decrypts it.

The `age` command (Debian package `age`) does the work as a child process reading and
writing files: the data streams through it and never sits whole in this process'
memory. Recipients are age public keys (or SSH public keys, which age also accepts);
they are not secrets and may appear on the command line. The identity file used to
decrypt is passed by path, never by content.

Encryption that was asked for and cannot be applied (no `age` binary, a key age rejects)
is a ConfigError raised before any work starts: plaintext never goes out instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.core.errors import ConfigError, VerifyError
from tasks.core.redact import redact

if TYPE_CHECKING:
    from tasks.core.settings import Settings

AGE_SUFFIX = ".age"
AGE_HEADER = b"age-encryption.org/v1\n"
FILE_MODE = 0o600


@dataclass(frozen=True)
class AgeEncryption:
    """Encrypt to these recipients with the `age` binary at `binary`."""

    recipients: tuple[str, ...]
    binary: str


def find_age() -> str:
    path = shutil.which("age")
    if path is None:
        raise ConfigError(
            "BACKUP_ENCRYPTION_RECIPIENTS is set but the `age` command is not installed "
            "(Debian package `age`); nothing was uploaded unencrypted"
        )
    return path


def parse_recipients(text: str) -> tuple[str, ...]:
    return tuple(r.strip() for r in text.split(",") if r.strip())


def encryption_from_settings(settings: Settings) -> AgeEncryption | None:
    """The encryption the settings ask for (None when none), checked with `age` itself."""
    text = settings.backup_encryption_recipients
    if text is None or not text.strip():
        return None
    recipients = parse_recipients(text)
    if not recipients:
        raise ConfigError("BACKUP_ENCRYPTION_RECIPIENTS: no age public key in it")
    encryption = AgeEncryption(recipients, find_age())
    check_recipients(encryption)
    return encryption


def _recipient_args(encryption: AgeEncryption) -> list[str]:
    args: list[str] = []
    for recipient in encryption.recipients:
        args += ["-r", recipient]
    return args


def check_recipients(encryption: AgeEncryption) -> None:
    """Let age parse the keys by encrypting nothing; a bad key is a ConfigError."""
    done = subprocess.run(
        [encryption.binary, *_recipient_args(encryption)],
        input=b"",
        capture_output=True,
        timeout=30,
    )
    if done.returncode != 0:
        reason = _first_line(done.stderr)
        raise ConfigError(
            f"BACKUP_ENCRYPTION_RECIPIENTS: age rejected the recipients ({reason}); "
            "nothing was uploaded unencrypted"
        )


def _first_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return redact(lines[0]) if lines else "no message"


def encrypt_file(encryption: AgeEncryption, source: Path, target: Path) -> None:
    """`age -r ... < source > target`, streamed; `target` is created 0600 and must not exist."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            done = subprocess.run(
                [encryption.binary, *_recipient_args(encryption)],
                stdin=src,
                stdout=dst,
                stderr=subprocess.PIPE,
                timeout=None,
            )
            dst.flush()
            os.fsync(dst.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if done.returncode != 0:
        target.unlink(missing_ok=True)
        raise ConfigError(f"age could not encrypt {source.name}: {_first_line(done.stderr)}")


def identity_from_settings(settings: Settings) -> Path:
    """The identity file that decrypts `.age` backups; ConfigError when it is not usable."""
    if settings.backup_encryption_identity is None:
        raise ConfigError(
            "this backup is encrypted (age): set BACKUP_ENCRYPTION_IDENTITY to the "
            "identity file whose public key was in BACKUP_ENCRYPTION_RECIPIENTS"
        )
    path = settings.resolve(settings.backup_encryption_identity)
    if not os.access(path, os.R_OK):
        raise ConfigError(f"BACKUP_ENCRYPTION_IDENTITY: cannot read {path}")
    return path


def decrypt_file(identity: Path, source: Path, target: Path, binary: str | None = None) -> None:
    """`age -d -i identity < source > target`, streamed; `target` is created 0600."""
    age = binary or shutil.which("age")
    if age is None:
        raise ConfigError("decrypting needs the `age` command (Debian package `age`)")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            done = subprocess.run(
                [age, "-d", "-i", str(identity)], stdin=src, stdout=dst, stderr=subprocess.PIPE
            )
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if done.returncode != 0:
        target.unlink(missing_ok=True)
        raise VerifyError(
            f"{source.name}: age could not decrypt it ({_first_line(done.stderr)}) — "
            "wrong BACKUP_ENCRYPTION_IDENTITY, or the file is damaged"
        )
