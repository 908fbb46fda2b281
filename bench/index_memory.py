"""Memory of the in-memory index: load N blobs (default 1,000,000) and report RSS per blob.

.venv/bin/python bench/index_memory.py [N]
"""

from __future__ import annotations

import hashlib
import resource
import sys
import time

from e3backup.repo.blob import BlobType
from e3backup.repo.index import IndexFile
from e3backup.repo.master_index import MasterIndex
from e3backup.repo.pack import PackedBlob


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    per_pack = 16
    base = rss_mib()
    idx = MasterIndex()
    t0 = time.perf_counter()
    # Build index-file-shaped JSON documents and load them as the repository does.
    for start in range(0, n, 150_000):
        packs = []
        for p in range(start, min(n, start + 150_000), per_pack):
            blobs = [
                {
                    "id": hashlib.sha256(i.to_bytes(8, "little")).hexdigest(),
                    "type": "data",
                    "offset": (i - p) * 1000,
                    "length": 1000,
                    "uncompressed_length": 2000,
                }
                for i in range(p, min(n, p + per_pack))
            ]
            packs.append({"id": hashlib.sha256(b"p%d" % p).hexdigest(), "blobs": blobs})
        for pk in IndexFile.from_json({"packs": packs}).packs:
            idx.add_pack(pk.id, pk.blobs)
        del packs
    idx.compact()
    load_s = time.perf_counter() - t0
    after = rss_mib()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    for i in range(0, n, max(1, n // 100_000)):
        assert idx.has(BlobType.DATA, hashlib.sha256(i.to_bytes(8, "little")).digest())
    lookups = len(range(0, n, max(1, n // 100_000)))
    look_us = (time.perf_counter() - t0) / lookups * 1e6
    steady = after - base
    print(f"blobs: {n:,}  packs: {len(idx.pack_ids()):,}")
    print(f"load: {load_s:.1f} s   steady RSS added: {steady:.1f} MiB = {steady * 1048576 / n:.0f} bytes/blob")
    print(f"peak RSS of the process: {peak:.0f} MiB   lookup: {look_us:.1f} us (incl. hashing the key)")
    _ = PackedBlob


if __name__ == "__main__":
    main()
