"""Off-site upload: our verified copy against a plain `fs.put` of the same file, same server.

    .venv/bin/python bench/offsite.py [--size-mb 200] [--repeat 3] [--stat median|min]
                                      [--no-ssh]

A backup-sized file of random bytes (gzip output does not compress further) goes to a
moto S3 server on loopback (and to an sshd, unless `--no-ssh`), each measurement in a
fresh Python process, to a fresh prefix:

- theirs: `fsspec.filesystem("s3").put(file, key)` — a plain upload, nothing checked;
- ours put: `Destination.put` alone — the same upload through our interface
            (8 MiB parts, 4 at once: bounded memory);
- ours copy: `tasks.offsite.copy.copy_backup` — the whole `--offsite` step: local sha256,
             upload, remote read-back and sha256, meta and sidecar (the commit marker);
- ours copy+age: the same with client-side encryption (`age` to one recipient).

Ratios are ours / theirs; memory is the peak RSS of the measured process. The verified
copy reads the object back once, so its time is about upload + download.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(ROOT))

from measure import Measurement, Row, measure, median_of, print_rows  # noqa: E402

from tests.support import services as sv  # noqa: E402  (sets the gcsfs variable first)

BUCKET = "bench-offsite"

_PLAIN_S3 = """
import fsspec, sys
fs = fsspec.filesystem("s3", key="testing", secret="testing",
                       client_kwargs={{"endpoint_url": {endpoint!r}, "region_name": "eu-west-1"}})
fs.put({local!r}, {remote!r})
"""

_PLAIN_SSH = """
import fsspec
fs = fsspec.filesystem("sftp", host={host!r}, port={port}, username={user!r},
                       client_keys=[{key!r}], known_hosts=None)
fs.put({local!r}, {remote!r})
"""

_OURS_PUT = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from tasks.storage.destination import parse_destination
dest = parse_destination({text!r}, ssh_config={ssh_config!r} and Path({ssh_config!r}))
dest.put(Path({local!r}), Path({local!r}).name)
"""

_OURS_COPY = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from tasks.core.backoff import RetryPolicy
from tasks.storage.destination import parse_destination
from tasks.offsite.encryption import AgeEncryption, find_age
from tasks.offsite.copy import copy_backup
from tasks.offsite.remote import staging_dir
dest = parse_destination({text!r}, ssh_config={ssh_config!r} and Path({ssh_config!r}))
recipient = {recipient!r}
encryption = AgeEncryption((recipient,), find_age()) if recipient else None
local = Path({local!r})
copy = copy_backup(dest, local, policy=RetryPolicy(60), staging=staging_dir(local.parent),
                   encryption=encryption)
assert copy.uploaded, copy
"""


def make_backup(folder: Path, size_mb: int) -> Path:
    path = folder / "full_backup_20261126_120000.tar.gz"
    with open(path, "wb") as out:
        for _ in range(size_mb):
            out.write(os.urandom(1 << 20))
    return path


def age_recipient(folder: Path) -> str:
    identity = folder / "bench.agekey"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    return subprocess.run(
        ["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True
    ).stdout.strip()


def python(script: str) -> list[str]:
    return [sys.executable, "-c", script]


@contextmanager
def servers(with_ssh: bool, tmp: Path) -> Iterator[dict[str, object]]:
    with ExitStack() as stack:
        found: dict[str, object] = {"s3": stack.enter_context(sv.moto_s3())}
        import boto3

        s3 = found["s3"]
        assert isinstance(s3, sv.S3Service)
        boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=s3.region,
        ).create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": s3.region})
        if with_ssh:
            from tests.support.destinations import write_client_ssh_config

            ssh = stack.enter_context(sv.sshd_server(tmp / "sshd"))
            found["ssh"] = ssh
            found["ssh_config"] = write_client_ssh_config(ssh, tmp / "client")
        yield found


def run_s3(
    found: dict[str, object], local: Path, recipient: str, repeat: int, stat: str
) -> list[Row]:
    s3 = found["s3"]
    assert isinstance(s3, sv.S3Service)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": s3.endpoint_url,
        "AWS_DEFAULT_REGION": s3.region,
    }

    def fresh() -> str:
        return f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}"

    def theirs() -> Measurement:
        remote = f"{BUCKET}/{uuid.uuid4().hex[:8]}/{local.name}"
        script = _PLAIN_S3.format(endpoint=s3.endpoint_url, local=str(local), remote=remote)
        return measure(python(script), "plain fs.put", env=env)

    def ours(template: str, label: str, with_age: bool = False) -> Measurement:
        script = template.format(
            root=str(ROOT),
            text=fresh(),
            ssh_config="",
            local=str(local),
            recipient=recipient if with_age else "",
        )
        return measure(python(script), label, env=env)

    plain = median_of([theirs() for _ in range(repeat)], stat)
    put = median_of([ours(_OURS_PUT, "Destination.put") for _ in range(repeat)], stat)
    copy = median_of([ours(_OURS_COPY, "copy_backup") for _ in range(repeat)], stat)
    aged = median_of([ours(_OURS_COPY, "copy_backup+age", True) for _ in range(repeat)], stat)
    return [
        Row("s3 (moto): Destination.put vs fs.put", put, plain),
        Row("s3 (moto): verified copy vs fs.put", copy, plain),
        Row("s3 (moto): verified copy + age vs fs.put", aged, plain),
    ]


def run_ssh(found: dict[str, object], local: Path, repeat: int, stat: str) -> list[Row]:
    ssh = found["ssh"]
    config = found["ssh_config"]
    assert isinstance(ssh, sv.SshService) and isinstance(config, Path)
    remote_root = Path(tempfile.mkdtemp(prefix="bench-ssh-"))

    def theirs() -> Measurement:
        target = remote_root / uuid.uuid4().hex[:8]
        target.mkdir()
        script = _PLAIN_SSH.format(
            host=ssh.host,
            port=ssh.port,
            user=ssh.user,
            key=str(ssh.key_path),
            local=str(local),
            remote=str(target / local.name),
        )
        return measure(python(script), "plain sftp put")

    def ours(template: str, label: str) -> Measurement:
        text = f"backup-server:{remote_root}/{uuid.uuid4().hex[:8]}"
        script = template.format(
            root=str(ROOT), text=text, ssh_config=str(config), local=str(local), recipient=""
        )
        return measure(python(script), label)

    try:
        plain = median_of([theirs() for _ in range(repeat)], stat)
        put = median_of([ours(_OURS_PUT, "Destination.put") for _ in range(repeat)], stat)
        copy = median_of([ours(_OURS_COPY, "copy_backup") for _ in range(repeat)], stat)
    finally:
        import shutil

        shutil.rmtree(remote_root, ignore_errors=True)
    return [
        Row("sftp (sshd): Destination.put vs fs.put", put, plain),
        Row("sftp (sshd): verified copy vs fs.put", copy, plain),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--stat", choices=("median", "min"), default="median")
    parser.add_argument("--no-ssh", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-offsite-") as scratch:
        tmp = Path(scratch)
        backups = tmp / "backups"
        backups.mkdir()
        print(f"making a {args.size_mb} MB backup file ...", file=sys.stderr)
        local = make_backup(backups, args.size_mb)
        recipient = age_recipient(tmp)
        with servers(not args.no_ssh, tmp) as found:
            rows = run_s3(found, local, recipient, args.repeat, args.stat)
            if not args.no_ssh:
                rows += run_ssh(found, local, args.repeat, args.stat)
    print_rows(
        rows,
        f"Off-site upload of a {args.size_mb} MB backup "
        f"(ratio = ours / plain fs.put; {args.stat} of {args.repeat})",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
