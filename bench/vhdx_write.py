"""Benchmark: VHDX writer vs raw writer vs `qemu-img convert -O vhdx`, on a 1 GiB mixed image.

    .venv/bin/python bench/vhdx_write.py [--size-mib 1024] [--workers 2] [--dir DIR]

The source is a raw file in the page cache: 50 % random, 25 % text-like, 25 % zero, mixed in
1 MiB pieces. Our writers get the allocation up front (the non-zero 1 MiB chunks, as a restore
knows them from the snapshot's blob list), then N threads `pread` 4 MiB segments from the source
and `write_at` them, like the restore pipeline; `close()` includes fsync. qemu-img runs with its
defaults plus a final `sync` of the output so all three pay for durability. Every output is
checked with `qemu-img compare` against the source.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from e3backup.formats import ImageWriter, RawWriter, VhdxOptions, VhdxWriter, is_zero

MiB = 1024 * 1024
SEGMENT = 4 * MiB


def make_source(path: Path, size: int) -> list[tuple[int, int]]:
    rng = random.Random(42)
    words = [rng.randbytes(rng.randint(2, 9)).hex().encode() for _ in range(2000)]
    allocated = []
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in range(0, size, MiB):
            kind = rng.random()
            if kind < 0.25:
                continue
            if kind < 0.5:
                text = b" ".join(rng.choice(words) for _ in range(MiB // 8))[:MiB]
                data = text.ljust(MiB, b".")
            else:
                data = rng.randbytes(MiB)
            f.seek(offset)
            f.write(data)
            allocated.append((offset, MiB))
    return allocated


def export(writer: ImageWriter, source: Path, size: int, workers: int) -> None:
    fd = os.open(source, os.O_RDONLY)
    local = threading.local()  # one reused buffer per thread (no 4 MiB allocation per segment)

    def copy(offset: int) -> None:
        if not hasattr(local, "buf"):
            local.buf = bytearray(SEGMENT)
        view = memoryview(local.buf)[: min(SEGMENT, size - offset)]
        n = os.preadv(fd, [view], offset)
        if not is_zero(view[:n]):
            writer.write_at(offset, view[:n])

    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(copy, range(0, size, SEGMENT)))
        writer.close()
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="variants run round-robin; median reported")
    parser.add_argument("--dir", default=None, help="where to put the files (default: a temp dir)")
    args = parser.parse_args()
    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        source = d / "source.raw"
        allocated = make_source(source, size)
        subprocess.run(["cat", str(source)], stdout=subprocess.DEVNULL, check=True)  # into page cache
        print(f"source: {args.size_mib} MiB, {len(allocated)} non-zero MiB, workers={args.workers}")

        def ours(make: Callable[[], ImageWriter]) -> Callable[[], None]:
            return lambda: export(make(), source, size, args.workers)

        def qemu(out: Path) -> Callable[[], None]:
            def run() -> None:
                subprocess.run(
                    ["qemu-img", "convert", "-f", "raw", "-O", "vhdx", str(source), str(out)], check=True
                )
                subprocess.run(["sync", str(out)], check=True)

            return run

        out = {name: d / f"{name}.out" for name in ("raw", "vhdx", "vhdx-1m", "qemu")}
        variants: list[tuple[str, str, Callable[[], None]]] = [
            ("raw writer (sparse)", "raw", ours(lambda: RawWriter(out["raw"], size, allocated))),
            ("VHDX writer (32 MiB blocks)", "vhdx", ours(lambda: VhdxWriter(out["vhdx"], size, allocated))),
            (
                "VHDX writer (1 MiB blocks)",
                "vhdx-1m",
                ours(lambda: VhdxWriter(out["vhdx-1m"], size, allocated, VhdxOptions(block_size=MiB))),
            ),
            ("qemu-img convert -O vhdx (+ sync)", "qemu", qemu(out["qemu"])),
        ]
        times: dict[str, list[float]] = {name: [] for _, name, _ in variants}
        for _ in range(args.rounds):
            for _, name, fn in variants:
                out[name].unlink(missing_ok=True)
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        for label, name, _ in variants:
            median, best = statistics.median(times[name]), min(times[name])
            print(
                f"{label:<36} median {median:5.2f} s = {size / MiB / median:5.0f} MiB/s  (best {best:.2f} s)"
            )
        for name, path in out.items():
            fmt = "raw" if name == "raw" else "vhdx"
            subprocess.run(
                ["qemu-img", "compare", "-q", "-f", "raw", "-F", fmt, str(source), str(path)], check=True
            )
            print(
                f"  {name:<8} identical to the source; {os.stat(path).st_blocks * 512 / MiB:5.0f} MiB on disk"
            )


if __name__ == "__main__":
    main()
