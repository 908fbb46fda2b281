"""Change tracking: image incrementals of a GPT disk (ext4 + NTFS) against restic and a full re-read.

    sudo .venv/bin/python bench/change_tracking.py [--size-gib 8] [--fill 0.5] [--workdir DIR] [--keep]
        [--rounds 1] [--cold] [--reuse] [--seed 0]

Builds a sparse GPT disk image: partition 1 ext4 and partition 2 NTFS (45 % of the disk each),
filled through the kernel (ext4) and ntfs-3g to ``--fill`` of each with files of 4 KiB-4 MiB
(half random, half low-entropy). Then, each tool as a subprocess on the same image file (page
cache warm and dirty data written back before every run; all see the same bytes; with
``--cold`` the image's pages are dropped from the page cache instead (``POSIX_FADV_DONTNEED`` on
the image file only), so every tool reads the disk as a backup of a real device does):
1. full backups: e3backup (change tracking stores its digests), restic ``backup --stdin``, and
   e3backup with ``--change-tracking off`` into a second repository (for the re-reads below:
   a parent made with tracking off has no digests, so the two chains stay apart);
2. unchanged: e3backup tracked (metadata only), restic, e3backup's full re-read (tracking off);
3. ``--rounds`` times (default 1; the load of a shared machine varies between runs): 1 % of the
   files changed (64 KiB overwritten in place in each), then the same three runs.
With ``--reuse`` (a ``--workdir`` kept by ``--keep``) the disk is not built again and the full
backups are skipped: each chain's latest snapshot is the parent (the tracked chain's digests were
taken at its last run; restic and the re-read read everything anyway). ``--seed`` picks other files
to change. Prints a markdown table (time, CPU time (user + system), bytes read into chunks, bytes read by
change tracking (scans and metadata digests), per-partition bytes) and the load average before and after, for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from image_backup import E3, PASSWORD, Measure, measured, warm

MiB = 1 << 20
GiB = 1 << 30
LINUX_FS = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
MS_BASIC = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def partition(disk: Path, start: int, size: int) -> Iterator[str]:
    dev = sh("losetup", "-f", "--show", "-o", str(start), "--sizelimit", str(size), str(disk)).strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@contextlib.contextmanager
def mounted(dev: str, kind: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="e3bench-mnt-") as mnt:
        if kind == "ntfs":
            sh("ntfs-3g", dev, mnt)
        else:
            sh("mount", "-t", "ext4", dev, mnt)
        try:
            yield Path(mnt)
        finally:
            subprocess.run(["umount", mnt], check=True)


def partition_rows(path: Path) -> dict[int, tuple[int, int]]:
    """Partition number -> (start, size) in bytes, from ``sgdisk -p``."""
    rows = {}
    for line in sh("sgdisk", "-p", str(path)).splitlines():
        bits = line.split()
        if len(bits) > 3 and bits[0].isdigit():
            rows[int(bits[0])] = (int(bits[1]) * 512, (int(bits[2]) - int(bits[1]) + 1) * 512)
    return rows


def build_disk(path: Path, size: int, fill: float) -> tuple[dict[int, tuple[int, int]], int]:
    with open(path, "wb") as f:
        f.truncate(size)
    part = size * 45 // 100 // MiB
    sh("sgdisk", "-Z", str(path))
    sh(
        "sgdisk",
        "-n",
        f"1:2048:+{part}M",
        "-t",
        f"1:{LINUX_FS}",
        "-n",
        f"2:0:+{part}M",
        "-t",
        f"2:{MS_BASIC}",
        str(path),
    )
    rows = partition_rows(path)
    rnd = random.Random(1)
    table = bytes.maketrans(bytes(range(256)), bytes(b"etaoinshrdlu \n.,"[i % 16] for i in range(256)))
    files = 0
    for index, kind in ((1, "ext4"), (2, "ntfs")):
        start, psize = rows[index]
        with partition(path, start, psize) as dev:
            if kind == "ext4":
                sh("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", dev)
            else:
                sh("mkntfs", "-F", "-Q", "-q", dev)
            with mounted(dev, kind) as mnt:
                target, written, i = int(psize * fill), 0, 0
                while written < target:
                    n = min(rnd.choice([4096, 64 * 1024, 256 * 1024, MiB, 4 * MiB]), target - written)
                    data = rnd.randbytes(n)
                    if i % 2:
                        data = data.translate(table)
                    d = mnt / f"d{i % 50}"
                    d.mkdir(exist_ok=True)
                    (d / f"f{i}").write_bytes(data)
                    written, i = written + n, i + 1
                files += i
    return rows, files


def change_files(path: Path, rows: dict[int, tuple[int, int]], share: float, seed: int) -> tuple[int, int]:
    """Overwrite 64 KiB in place in ``share`` of each file system's files; returns how many, and
    their total size (what a file-level tracker must read: it knows which files, not which bytes)."""
    rnd, changed, size_sum = random.Random(seed), 0, 0
    for index, kind in ((1, "ext4"), (2, "ntfs")):
        with partition(path, *rows[index]) as dev, mounted(dev, kind) as mnt:
            names = sorted(p for p in mnt.glob("d*/f*"))
            for p in rnd.sample(names, max(1, int(len(names) * share))):
                size = p.stat().st_size
                with open(p, "r+b") as f:
                    f.seek(rnd.randrange(max(1, size - 65536)))
                    f.write(rnd.randbytes(min(65536, size)))
                changed += 1
                size_sum += size
    return changed, size_sum


def change(path: Path, rows: dict[int, tuple[int, int]], seed: int) -> str:
    """1 % of the files changed, then written back, so no run pays for another's writeback."""
    n, size = change_files(path, rows, 0.01, seed)
    os.sync()
    return f"{n} files of {size / 1e6:.1f} MB"


def evict(path: Path) -> None:
    """Drop the image's pages from the page cache (this file only; written back first)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gib", type=float, default=8)
    ap.add_argument("--fill", type=float, default=0.5)
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--rounds", type=int, default=1, help="times the 1 %% change cases run (load varies)")
    ap.add_argument("--cold", action="store_true", help="every run reads the image from disk, not the page cache")
    ap.add_argument("--seed", type=int, default=0, help="offsets the seeds of the changes (another set of files)")
    ap.add_argument("--reuse", action="store_true", help="--workdir holds a kept run: skip the disk and full backups")
    ap.add_argument("--chunk-size", help="e3backup's --chunk-size for every run (default: the engine's)")
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="e3bench-ct-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "E3BACKUP_PASSWORD": PASSWORD, "RESTIC_PASSWORD": PASSWORD}
    disk = work / "disk.img"
    e3r, e3o, rr = work / "e3", work / "e3-off", work / "restic"
    try:
        reuse = a.reuse and disk.exists() and all((r / "config").exists() for r in (e3r, e3o, rr))
        t0 = time.perf_counter()
        if reuse:  # every chain already has its full backup; each run below compares with its own parent
            rows, files, a.size_gib = partition_rows(disk), 0, disk.stat().st_size / GiB
            print(f"reusing the disk and repositories in {work}", flush=True)
        else:
            rows, files = build_disk(disk, int(a.size_gib * GiB), a.fill)
            print(f"built {a.size_gib} GiB disk with {files} files in {time.perf_counter() - t0:.0f} s", flush=True)
            for repo in (e3r, e3o):
                subprocess.run([*E3, "-r", str(repo), "init"], env=env, check=True, capture_output=True)
            subprocess.run(["restic", "-r", str(rr), "init"], env=env, check=True, capture_output=True)

        def e3(tracked: bool = True) -> Measure:
            os.sync()  # the last run's packs written back before this one is timed
            evict(disk) if a.cold else warm(disk)
            # the re-reads have their own repository: a parent made with tracking off has no digests
            repo, flags = (e3r, ["--change-tracking", "auto"]) if tracked else (e3o, ["--change-tracking", "off"])
            if a.chunk_size:
                flags += ["--chunk-size", a.chunk_size]
            return measured([*E3, "-r", str(repo), "image", "backup", str(disk), "--json", *flags], env)

        def restic() -> Measure:
            os.sync()
            evict(disk) if a.cold else warm(disk)
            argv = ["restic", "-r", str(rr), "--cache-dir", str(work / "cache"), "backup", "--json", "--stdin",
                    "--stdin-filename", "disk.img"]  # fmt: skip
            return measured(argv, env, stdin=disk)

        load_before = os.getloadavg()
        results: list[tuple[str, str, Measure]] = []
        if not reuse:
            results += [("full", "e3backup", e3()), ("full", "restic", restic()), ("full", "e3backup off", e3(False))]
        seed = 1 + a.seed
        for r in range(a.rounds + 1):
            case = f"round {r}: 1 % of files changed ({change(disk, rows, seed + r)})" if r else "unchanged"
            results += [(case, "e3backup tracked", e3()), (case, "restic", restic())]
            results += [(case, "e3backup full re-read", e3(False))]
        load = " / ".join(", ".join(f"{x:.2f}" for x in la) for la in (load_before, os.getloadavg()))
        cache = "cold (image evicted from the page cache before each run)" if a.cold else "warm"
        print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; disk {a.size_gib} GiB; {files} files; "
              f"page cache {cache}")  # fmt: skip
        print(f"load average (1, 5, 15 min) before / after the runs: {load}")
        print("| case | tool | time s | CPU s | bytes read | read by tracking | added | peak RSS MiB | "
              "per partition (method: bytes planned) |")  # fmt: skip
        print("|---|---|---:|---:|---:|---:|---:|---:|---|")
        for label, tool, m in results:
            s = m.summary
            read = s.get("bytes_read", disk.stat().st_size)
            added = s.get("bytes_added", s.get("data_added", 0))
            parts = ", ".join(f"{r['partition']} {r['method']}: {r['bytes_planned'] / 1e6:.1f} MB"
                              for r in s.get("change_tracking", []))  # fmt: skip
            if any(r["reason"].startswith("verify read") for r in s.get("change_tracking", [])):
                tool += " (verify read: every 10th incremental reads everything)"  # a long --reuse chain
            tracked = s.get("tracking_bytes_read")
            by_tracking = f"{tracked / 1e6:.1f} MB" if tracked is not None else ""
            print(f"| {label} | {tool} | {m.seconds:.2f} | {m.cpu_seconds:.2f} | {read / 1e6:.1f} MB | {by_tracking} | "
                  f"{added / 1e6:.1f} MB | {m.rss_mib:.0f} | {parts} |")  # fmt: skip
        print_ratios(results)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


def print_ratios(results: list[tuple[str, str, Measure]]) -> None:
    """Per case, the tracked run against restic and against the full re-read of the same round
    (wall and CPU time); for the 1 % rounds also the median over the rounds."""
    by_case: dict[str, dict[str, Measure]] = {}
    for label, tool, m in results:
        by_case.setdefault(label, {})[tool.split(" (")[0]] = m
    rows: list[tuple[str, float, float, float, float]] = []
    for label, tools in by_case.items():
        t, r, f = (tools.get(k) for k in ("e3backup tracked", "restic", "e3backup full re-read"))
        if t is None or r is None or f is None:
            continue
        rows.append((label, t.seconds / r.seconds, t.seconds / f.seconds, t.cpu_seconds / r.cpu_seconds,
                     t.cpu_seconds / f.cpu_seconds))  # fmt: skip
    print("\n| case | tracked / restic (wall) | tracked / re-read (wall) | tracked / restic (CPU) | "
          "tracked / re-read (CPU) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for label, *ratios in rows:
        print(f"| {label} | " + " | ".join(f"{x:.3f}x" for x in ratios) + " |")
    changed = [row[1:] for row in rows if row[0].startswith("round")]
    if len(changed) > 1:
        medians = [statistics.median(col) for col in zip(*changed, strict=True)]
        print(f"| 1 % changed, median of {len(changed)} rounds | " + " | ".join(f"{x:.3f}x" for x in medians) + " |")


if __name__ == "__main__":
    main()
