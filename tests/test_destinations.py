"""One conformance suite for the storage abstraction, run against every destination.

Each case runs on a real server on loopback — moto (S3), the GCS emulator, Azurite, an
sshd reached through an SSH client config with a real known_hosts entry — and on a
local folder. What one backend does, all must do (restic's backend test suite).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.destinations import (
    BACKENDS,
    BackendSet,
    new_prefix,
    offsite_backends,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendSet]:
    with offsite_backends(tmp_path_factory.mktemp("offsite")) as found:
        yield found


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            out.write(chunk)
            left -= len(chunk)
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_put_list_stat_open_sha256(backends: BackendSet, backend: str, tmp_path: Path) -> None:
    prefix = new_prefix()
    dest = backends.destination(backend, prefix)
    assert dest.list() == []  # a folder that does not exist yet is empty
    local = random_file(tmp_path / "a.bin", 1_234_567)
    dest.put(local, "a.bin")
    assert [(e.name, e.size) for e in dest.list()] == [("a.bin", 1_234_567)]
    assert dest.stat("a.bin") == 1_234_567
    with dest.open("a.bin") as handle:
        assert handle.read() == local.read_bytes()
    assert dest.sha256("a.bin") == (sha256_of(local), 1_234_567)
    # Seen from outside, through a plain client: the final name only, no leftovers.
    assert backends.raw_names(backend, prefix) == ["a.bin"]


def test_large_file_is_streamed_with_progress(
    backends: BackendSet, backend: str, tmp_path: Path
) -> None:
    dest = backends.destination(backend, new_prefix())
    size = 20 * 2**20 + 12345  # several parts/blocks, not a multiple of any of them
    local = random_file(tmp_path / "big.bin", size)
    seen: list[int] = []
    dest.put(local, "big.bin", progress=seen.append)
    assert seen and max(seen) == size
    assert dest.sha256("big.bin") == (sha256_of(local), size)


def test_overwrite_replaces_content(backends: BackendSet, backend: str, tmp_path: Path) -> None:
    dest = backends.destination(backend, new_prefix())
    first = random_file(tmp_path / "1", 4096)
    second = random_file(tmp_path / "2", 9000)
    dest.put(first, "x.bin")
    dest.put(second, "x.bin")
    assert dest.stat("x.bin") == 9000
    assert dest.sha256("x.bin")[0] == sha256_of(second)
    assert [e.name for e in dest.list()] == ["x.bin"]


def test_missing_object(backends: BackendSet, backend: str) -> None:
    dest = backends.destination(backend, new_prefix())
    assert dest.stat("nothing.bin") is None
    with pytest.raises(FileNotFoundError), dest.open("nothing.bin"):
        pass
    with pytest.raises(FileNotFoundError):
        dest.sha256("nothing.bin")
    dest.delete("nothing.bin")  # deleting what is not there is fine


def test_delete_and_small_files(backends: BackendSet, backend: str, tmp_path: Path) -> None:
    prefix = new_prefix()
    dest = backends.destination(backend, prefix)
    dest.put_bytes("note.sha256", b"abc  note\n")
    dest.put(random_file(tmp_path / "d", 1000), "d.bin")
    assert dest.read_bytes("note.sha256") == b"abc  note\n"
    assert {e.name for e in dest.list()} == {"note.sha256", "d.bin"}
    dest.delete("d.bin")
    assert dest.stat("d.bin") is None
    assert [e.name for e in dest.list()] == ["note.sha256"]
    assert backends.raw_names(backend, prefix) == ["note.sha256"]


def test_names_with_slashes_are_refused(backends: BackendSet, backend: str) -> None:
    dest = backends.destination(backend, new_prefix())
    for bad in ("../escape", "a/b", "", ".."):
        with pytest.raises(ValueError):
            dest.path(bad)


_KILLED_UPLOAD = """
import os, sys, time
sys.path.insert(0, {repo!r})
from tests.support.destinations import BackendSet  # noqa: F401  (gcsfs env first)
from tasks.storage.destination import parse_destination
from pathlib import Path
dest = parse_destination({text!r}, ssh_config={ssh_config!r} and Path({ssh_config!r}))
def progress(done):
    if done == 0:  # some SDKs announce the size first
        return
    print("progress", done, flush=True)
    time.sleep(60)  # hold the upload here until the test kills us
dest.put(Path({local!r}), "victim.bin", progress=progress)
print("finished", flush=True)
"""


def test_killed_upload_never_leaves_the_final_name(
    backends: BackendSet, backend: str, tmp_path: Path
) -> None:
    """SIGKILL in the middle of an upload: the final name must not exist afterwards."""
    prefix = new_prefix()
    local = random_file(tmp_path / "victim.bin", 40 * 2**20)
    env = {**os.environ, **backends.env(backend)}
    script = _KILLED_UPLOAD.format(
        repo=str(Path(__file__).resolve().parents[1]),
        text=backends.text(backend, prefix),
        ssh_config=env.get("OFFSITE_SSH_CONFIG", ""),
        local=str(local),
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("progress"), line
        done = int(line.split()[1])
        assert 0 < done < local.stat().st_size
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    time.sleep(0.5)
    names = backends.raw_names(backend, prefix)
    assert "victim.bin" not in names
    dest = backends.destination(backend, prefix)
    assert dest.stat("victim.bin") is None
    assert all(dest.is_partial(n) for n in names), names  # at most a hidden partial


def test_missing_parent_or_bucket_is_a_permanent_error(
    backends: BackendSet, backend: str, tmp_path: Path
) -> None:
    local = random_file(tmp_path / "f", 100)
    if backend in ("s3", "gs", "az"):
        text = f"{backend}://no-such-bucket-{new_prefix()}/x"
    elif backend == "ssh":
        text = backends.text("ssh", "missing-parent/child")
    else:
        text = str(tmp_path / "not-mounted" / "chatbot")
    from tasks.storage.destination import parse_destination

    env = {**os.environ, **backends.env(backend)}
    ssh_config = Path(env["OFFSITE_SSH_CONFIG"]) if backend == "ssh" else None
    dest = parse_destination(text, ssh_config=ssh_config, env=env)
    with pytest.raises(Exception) as caught:
        dest.put(local, "f.bin")
    assert not dest.is_transient(caught.value), repr(caught.value)
    if backend == "local":
        assert not (tmp_path / "not-mounted").exists()  # no folder tree made on the wrong disk


@pytest.mark.parametrize("backend_down", ["s3", "az", "ssh"])
def test_unreachable_server_is_a_transient_error(
    backends: BackendSet, backend_down: str, tmp_path: Path
) -> None:
    """A server that is not there (connection refused) is worth a retry.

    GCS is left out here: gcsfs retries a refused connection six times (about 30 s)
    before it gives up, whatever the caller asks; tests/test_offsite_faults.py covers
    the outer retry on S3 and SSH.
    """
    from tasks.storage.destination import parse_destination
    from tests.support.services import free_port

    port = free_port()
    env = {**os.environ, **backends.env(backend_down)}
    if backend_down == "s3":
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
        text = "s3://chatbot-offsite/x"
    elif backend_down == "az":
        assert backends.azure is not None
        env["AZURE_STORAGE_CONNECTION_STRING"] = backends.azure.connection_string.replace(
            backends.azure.blob_endpoint, f"http://127.0.0.1:{port}/devstoreaccount1"
        )
        text = "az://chatbot-offsite/x"
    else:
        text = f"sftp://127.0.0.1:{port}{tmp_path}"
    dest = parse_destination(text, env=env)
    with pytest.raises(Exception) as caught:
        dest.put(random_file(tmp_path / "f", 100), "f.bin")
    assert dest.is_transient(caught.value), repr(caught.value)
