"""The allocator setting of tasks/stream/allocator.py (issue 18): what it changes, when.

Extracting an archive moves 1 MiB blocks between the read-ahead thread and the one that
writes; with glibc's defaults their memory is handed back and faulted in again for each
block (1.84 million minor page faults and 25 s of system time for test-restore of a 2 GB
archive). Measured here in a fresh process each, on a real archive, with the setting on
and off: the page faults while extracting it.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_EXTRACT = """
import resource, sys
from pathlib import Path
import tasks.stream.allocator as allocator
if sys.argv[1] == "off":
    allocator._done = True  # as if already tuned: glibc's defaults stay
from tasks.verify.restore_test import check_archive_read
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
read = check_archive_read(Path(sys.argv[2]), Path(sys.argv[3]))
assert read.extracted is not None and read.extracted.passed, read.extracted
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _archive(path: Path) -> Path:
    rng = random.Random(7)
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for i in range(60):
            size = rng.randint(100_000, 3_000_000)
            data = os.urandom(size // 2) + b"a chat message " * (size // 30)
            info = tarfile.TarInfo(f"full_backup_20260101_000000/uploads/f{i:02d}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _faults(setting: str, archive: Path, target: Path, **env: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _EXTRACT, setting, str(archive), str(target)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_extraction_stops_faulting_in_every_block(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "full_backup_20260101_000000.tar.gz")
    tuned = _faults("on", archive, tmp_path / "on")
    default = _faults("off", archive, tmp_path / "off")
    # ~90 MB extracted: ~80,000 faults at glibc's defaults, ~4,000 tuned (measured)
    assert tuned * 4 < default, (tuned, default)


def test_an_operators_malloc_setting_is_left_alone() -> None:
    code = "import tasks.stream.allocator as a; print(a.keep_block_memory(), a.keep_block_memory())"
    for env in (
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
    ):
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.split() == ["False", "False"], (env, done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_once_per_process() -> None:
    code = "import tasks.stream.allocator as a; print(a.keep_block_memory(), a.keep_block_memory())"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "False"]


# Threads that each make and free 1 MiB blocks, as the parallel gzip and the read-back do;
# then glibc's own report of its arenas (malloc_info: one <heap nr=...> per arena).
_ARENAS = """
import ctypes, sys, tempfile, threading
import tasks.stream.allocator as allocator
print(allocator.share_one_arena() if sys.argv[1] == "shared" else "-")
def blocks():
    for _ in range(50):
        bytearray(1 << 20)
threads = [threading.Thread(target=blocks) for _ in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
libc.fclose.argtypes = (ctypes.c_void_p,)
with tempfile.NamedTemporaryFile(suffix=".xml") as report:
    handle = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    print(open(report.name).read().count("<heap nr="))
"""


def _arenas(setting: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    done = subprocess.run(
        [sys.executable, "-c", _ARENAS, setting],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer, heaps = done.stdout.split()
    return answer, int(heaps)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas")
def test_backup_jobs_threads_share_the_arenas_there_are() -> None:
    answer, shared = _arenas("shared")
    _, default = _arenas("default")
    assert answer == "True"
    # six threads: glibc gives them arenas of their own (3 here), shared they use the one
    assert shared == 1 and default > 1, (shared, default)
    answer, _ = _arenas("shared", MALLOC_ARENA_MAX="4")  # the operator's setting wins
    assert answer == "False"


def test_the_cli_tunes_the_allocator_before_anything_else() -> None:
    # Set only at the first stream, restore-all of a 2 GB tree took 853,000 page faults;
    # set by the CLI first thing, 38,500; and one arena shared by every thread (restore-all
    # 158-162 -> 145-148 MiB; tasks/stream/allocator.py).
    code = (
        "import tasks.stream.allocator as a\n"
        "from flows.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('tuned' if a._done else 'untouched', a.keep_block_memory())\n"
        "print('shared' if a._shared else 'not shared', a.share_one_arena())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split("\n")[-3:] == ["tuned False", "shared False", ""], done.stdout[-300:]
