"""Change tracking at scale: digest and compare one million records; the stored size.

    sudo .venv/bin/python bench/change_tracking_scale.py [--records 1000000]

1. NTFS-shaped: ``--records`` 1 KiB MFT records (a header and attributes as mkntfs writes them,
   with per-record names, times and run lists), digested in 8 MiB slices as the MFT scan does,
   then 1 % of them changed and compared against the first digests.
2. ext4, real: a sparse image made with ``mkfs.ext4 -N <records>``, scanned twice with
   ``changetrack.ext4.scan`` (the second compares with the first).
Prints seconds, the peak RSS of this process and the stored state's bytes per record.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from e3backup.sources.changetrack.digest import changed_records, record_digests
from e3backup.sources.changetrack.ext4 import scan as ext4_scan
from e3backup.sources.changetrack.state import FsDigests, TrackingState
from e3backup.sources.device import open_device

SLICE = 8 << 20


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ntfs_like(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, 1024), dtype=np.uint8)
    rows[:, :4] = np.frombuffer(b"FILE", dtype=np.uint8)
    rows[:, 0x10:0x38] = rng.integers(0, 256, (n, 0x28), dtype=np.uint8)  # seq, LSN, flags, sizes
    rows[:, 0x38:0x180] = rng.integers(0, 256, (n, 0x148), dtype=np.uint8)  # attributes: times, names, runs
    return rows


def digest_sliced(rows: np.ndarray) -> np.ndarray:
    per = SLICE // rows.shape[1]
    return np.concatenate([record_digests(rows[i : i + per]) for i in range(0, len(rows), per)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    a = ap.parse_args()
    n = a.records
    rows = ntfs_like(n, 1)
    t = time.perf_counter()
    first = digest_sliced(rows)
    t_digest = time.perf_counter() - t
    changed_idx = np.random.default_rng(2).choice(n, n // 100, replace=False)
    rows[changed_idx, 0x40] ^= 1  # 1 %: one bit of an attribute each
    t = time.perf_counter()
    second = digest_sliced(rows)
    found = changed_records(first, second)
    t_compare = time.perf_counter() - t
    assert sorted(found.tolist()) == sorted(changed_idx.tolist())
    state = TrackingState((FsDigests(1, "ntfs", {"serial": "X"}, 0.0, second),)).encode()
    print(f"NTFS-shaped, {n} records of 1 KiB: digest {t_digest:.2f} s; digest + compare (1 % changed, "
          f"all found) {t_compare:.2f} s; stored state {len(state)} bytes = {len(state) / n:.2f} B/record; "
          f"peak RSS {rss_mib():.0f} MiB (with the {rows.nbytes >> 20} MiB of records this bench holds)")  # fmt: skip
    del rows
    with tempfile.TemporaryDirectory(prefix="e3bench-ct-scale-") as tmp:
        img = Path(tmp) / "ext4.img"
        size = max(4 << 30, n * 4096)
        with open(img, "wb") as f:
            f.truncate(size)
        t = time.perf_counter()
        subprocess.run(["mkfs.ext4", "-q", "-F", "-N", str(n), "-E", "lazy_itable_init=0", str(img)], check=True)
        t_mkfs = time.perf_counter() - t
        with open_device(img) as dev:
            t = time.perf_counter()
            s1 = ext4_scan(dev)
            t1 = time.perf_counter() - t
            t = time.perf_counter()
            s2 = ext4_scan(dev, s1.digests, time.time() - 3600)
            t2 = time.perf_counter() - t
        print(f"ext4 (mkfs -N {n}: {len(s1.digests)} inodes, mkfs {t_mkfs:.0f} s): first scan {t1:.2f} s, "
              f"scan + compare {t2:.2f} s ({s2.records_changed} changed); peak RSS {rss_mib():.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
