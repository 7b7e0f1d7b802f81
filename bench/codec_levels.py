"""gzip codecs and levels on a file, as the product writes them (1 MiB members), one thread.

    .venv/bin/python bench/codec_levels.py DUMP.sql [--mb 150] [--repeat 3]

For each codec and level: MB/s of CPU time (the thread's own, so other people's load on
a shared machine does not count; min of --repeat runs) deflating, MB/s inflating, and the
output size relative to `gzip -6` of the same bytes (the gzip command, run once). Used to
choose DEFAULT_LEVEL in tasks/stream/compress.py (issue 18: size <= 1.05 x gzip -6), and
which library does levels 4-9 (tasks/stream/gzip_codec.py: zlib-ng).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import zlib

from isal import isal_zlib
from zlib_ng import zlib_ng

BLOCK = 1 << 20


def _members(data: bytes, make) -> tuple[float, list[bytes]]:
    started = time.thread_time()
    out = []
    for start in range(0, len(data), BLOCK):
        c = make()
        out.append(c.compress(data[start : start + BLOCK]) + c.flush())
    return time.thread_time() - started, out


def _inflate(members: list[bytes], make) -> float:
    started = time.thread_time()
    for member in members:
        make().decompress(member)
    return time.thread_time() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump")
    parser.add_argument("--mb", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with open(args.dump, "rb") as handle:
        data = handle.read(args.mb * BLOCK)
    mb = len(data) / BLOCK
    gzip6 = len(subprocess.run(["gzip", "-6", "-c"], input=data, capture_output=True).stdout)
    print(f"{args.dump}: {mb:.0f} MB, gzip -6 {gzip6 / BLOCK:.1f} MB ({len(data) / gzip6:.2f}x)")
    print("| codec | level | deflate MB/s (CPU) | inflate MB/s (CPU) | ratio | size vs gzip -6 |")
    print("|---|---:|---:|---:|---:|---:|")
    codecs = [("isal", lv, lambda lv=lv: isal_zlib.compressobj(lv, 8, 31)) for lv in (0, 1, 2, 3)]
    codecs += [("zlib-ng", lv, lambda lv=lv: zlib_ng.compressobj(lv, 8, 31)) for lv in range(1, 7)]
    codecs += [("zlib", lv, lambda lv=lv: zlib.compressobj(lv, 8, 31)) for lv in (1, 2, 6)]
    inflaters = {
        "isal": lambda: isal_zlib.decompressobj(31),
        "zlib-ng": lambda: zlib_ng.decompressobj(31),
        "zlib": lambda: zlib.decompressobj(31),
    }
    for name, level, make in codecs:
        runs = [_members(data, make) for _ in range(args.repeat)]
        seconds = min(r[0] for r in runs)
        members = runs[0][1]
        size = sum(map(len, members))
        inflate = min(_inflate(members, inflaters[name]) for _ in range(args.repeat))
        print(
            f"| {name} | {level} | {mb / seconds:.0f} | {mb / inflate:.0f} | "
            f"{len(data) / size:.2f} | {size / gzip6:.3f} |"
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
