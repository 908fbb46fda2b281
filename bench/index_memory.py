"""Memory and speed of the in-memory index: load N blobs (default 1,000,000) from index files.

    .venv/bin/python bench/index_memory.py [N]

The synthetic index files (150,000 blobs each, as restic and e3backup write them; 16 blobs per
pack, 1 in 8 a tree blob, most compressed) are written as JSON text to a temporary directory
first. A fresh child process then loads them the way ``Repository.load_index`` does (read,
``json.loads``, ``MasterIndex.add_index_json``, one ``compact`` at the end; no decryption), so
neither the generator nor its data count in the RSS figures. The child reports:

- steady RSS: RSS after loading minus RSS before (interpreter, numpy and e3backup imported);
- peak RSS: the child's high-water mark, also minus that baseline;
- load seconds, and the seconds ``json.loads`` alone takes for the same files;
- lookup time: ``has()`` of 100,000 known IDs and 100,000 unknown ones (IDs precomputed).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PER_FILE = 150_000
PER_PACK = 16


def blob_id(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(8, "little")).digest()


def write_files(n: int, out: Path) -> None:
    for f, start in enumerate(range(0, n, PER_FILE)):
        packs = []
        for p in range(start, min(n, start + PER_FILE), PER_PACK):
            blobs = []
            for i in range(p, min(n, p + PER_PACK)):
                b = {"id": blob_id(i).hex(), "type": "tree" if i % 8 == 7 else "data",
                     "offset": (i - p) * 600_000, "length": 600_000}
                if i % 4:
                    b["uncompressed_length"] = 1_048_576
                blobs.append(b)
            packs.append({"id": hashlib.sha256(b"p%d" % p).hexdigest(), "blobs": blobs})
        (out / f"{f:04d}.json").write_text(json.dumps({"packs": packs}, separators=(",", ":")))


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(n: int, files: list[Path]) -> None:
    from e3backup.repo.blob import BlobType
    from e3backup.repo.master_index import MasterIndex

    gc.collect()
    base = rss()
    idx = MasterIndex()
    t0 = time.perf_counter()
    for path in files:
        idx.add_index_json(json.loads(path.read_text()), path.name)
    idx.compact()
    load_s = time.perf_counter() - t0
    gc.collect()
    steady = rss() - base
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    assert len(idx) == n

    t0 = time.perf_counter()
    for path in files:
        json.loads(path.read_text())
    json_s = time.perf_counter() - t0

    rng = random.Random(1)
    sample = rng.sample(range(n), min(n, 100_000))
    known = [(BlobType.TREE if i % 8 == 7 else BlobType.DATA, blob_id(i)) for i in sample]
    unknown = [(BlobType.DATA, rng.randbytes(32)) for _ in range(100_000)]
    t0 = time.perf_counter()
    assert all(idx.has(t, b) for t, b in known)
    hit_us = (time.perf_counter() - t0) / len(known) * 1e6
    t0 = time.perf_counter()
    assert not any(idx.has(t, b) for t, b in unknown)
    miss_us = (time.perf_counter() - t0) / len(unknown) * 1e6

    mib = 1 << 20
    print(f"blobs: {n:,}  packs: {len(idx.pack_ids()):,}  index files: {len(files)}")
    print(f"steady RSS: {steady / mib:.1f} MiB = {steady / n:.1f} bytes/blob"
          f"   (tables: {idx.nbytes() / n:.1f} bytes/blob)")
    print(f"peak RSS:   {peak / mib:.1f} MiB = {peak / n:.1f} bytes/blob above the baseline"
          f" of {base / mib:.0f} MiB")
    print(f"load: {load_s:.2f} s   json.loads alone: {json_s:.2f} s")
    print(f"lookup: {hit_us:.2f} us hit, {miss_us:.2f} us miss")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--measure":
        n = int(sys.argv[2])
        measure(n, sorted(Path(sys.argv[3]).glob("*.json")))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory(prefix="e3-index-bench-") as d:
        t0 = time.perf_counter()
        write_files(n, Path(d))
        size = sum(p.stat().st_size for p in Path(d).iterdir())
        print(f"(wrote {size / (1 << 20):.0f} MiB of index JSON in {time.perf_counter() - t0:.1f} s)")
        env = dict(os.environ, PYTHONHASHSEED="0")
        subprocess.run([sys.executable, __file__, "--measure", str(n), d], check=True, env=env)


if __name__ == "__main__":
    main()
