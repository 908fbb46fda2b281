"""Image restore: e3backup (1 and 8 workers, raw; VHDX export) vs ``restic restore``/``dump``.

    sudo .venv/bin/python bench/image_restore.py [--workdir DIR] [--size-gib 2] [--disks mixed,ext4] [--s3]
        [--repeat 3] [--doc]

Two disks of ``--size-gib``: ``mixed``, the worst case for a restore (45 % random, 45 %
low-entropy, 10 % zeros in 1 MiB blocks, no file system, every byte to restore; the
``image_backup`` bench's ``full`` device), and ``ext4``, a file system half full of files (text,
random and duplicated data), as a server disk looks. Each is backed up once by ``e3backup image
backup`` and once by ``restic backup --stdin``; then each restore runs ``--repeat`` times (the tools
taking turns; the table shows the median run), as a subprocess, into a fresh file:
e3backup ``image restore --workers 1`` and ``--workers 8`` (raw, sparse), ``image export --format
vhdx``, ``restic restore`` of the ``--stdin`` snapshot and ``restic dump`` to a file. Repository
files are in the page cache for both tools (local), or on a local SeaweedFS (``--s3``).
The e3backup outputs are compared with the source; ``--doc`` appends the table to
``docs/benchmarks.md``. Everything is deleted at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_backup import GiB, Measure, MiB, make_full, measured, warm

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password"
E3 = [sys.executable, "-m", "e3backup"]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(16 * MiB):
            h.update(block)
    return h.hexdigest()


def make_half_full_ext4(path: Path, size: int, work: Path) -> None:
    """An ext4 file system of ``size`` bytes, about half of it in files (``mkfs.ext4 -d``)."""
    src = work / "ext4-files"
    src.mkdir()
    rnd = random.Random(5)
    table = bytes.maketrans(bytes(range(256)), bytes(b"etaoinshrdlu \n.,"[i % 16] for i in range(256)))
    budget, n = size // 2, 0
    while budget > 0:
        length = min(budget, rnd.choice([64 << 10, 1 << 20, 4 << 20, 16 << 20]))
        kind = rnd.random()
        if kind < 0.4:
            body = rnd.randbytes(length)
        elif kind < 0.9:
            body = rnd.randbytes(length).translate(table)
        else:
            body = b"duplicate block\n" * (length // 16)
        sub = src / f"d{n % 17}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{n}.dat").write_bytes(body)
        budget -= length
        n += 1
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(path)], check=True)
    shutil.rmtree(src)


def drop_file(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def run_case(
    where: str, work: Path, dev: Path, env: dict[str, str], e3_repo: str, restic_repo: str, repeat: int
) -> list[tuple[str, str, Measure]]:
    """Each restore ``repeat`` times, the tools taking turns (so a slow spell of the machine hits
    all of them); the row is the run with the median time."""
    subprocess.run([*E3, "-r", e3_repo, "init"], env=env, check=True, capture_output=True)
    subprocess.run(["restic", "-r", restic_repo, "init"], env=env, check=True, capture_output=True)
    warm(dev)
    measured([*E3, "-r", e3_repo, "image", "backup", str(dev), "--json"], env)
    restic_base = ["restic", "-r", restic_repo, "--cache-dir", str(work / "restic-cache")]
    measured([*restic_base, "backup", "--json", "--stdin", "--stdin-filename", "disk.img"], env, stdin=dev)
    source_hash = sha256_file(dev)
    out = work / "out"
    e3 = [*E3, "-r", e3_repo, "image"]
    cases = [
        ("e3backup restore, 1 worker", [*e3, "restore", "latest", "--target", str(out), "--workers", "1", "--json"]),
        ("e3backup restore, 8 workers", [*e3, "restore", "latest", "--target", str(out), "--workers", "8", "--json"]),
        ("e3backup export vhdx, 8 workers", [*e3, "export", "latest", str(out), "--format", "vhdx", "--json"]),
        ("restic restore", [*restic_base, "restore", "latest", "--target", str(out)]),
        ("restic restore, then sync", []),
        ("restic dump", []),
    ]
    runs: dict[str, list[Measure]] = {label: [] for label, _ in cases}
    for n in range(repeat):
        for label, argv in cases:
            drop_file(out)
            subprocess.run(["sync"], check=True)
            if label == "restic restore, then sync":
                continue  # timed with "restic restore"
            if label == "restic dump":
                t0 = time.perf_counter()
                with open(out, "wb") as f:
                    subprocess.run([*restic_base, "dump", "latest", "/disk.img"], env=env, stdout=f, check=True)
                m = Measure(time.perf_counter() - t0, float("nan"), {})
            else:
                m = measured(argv, env)
            if label.startswith("e3backup restore"):
                assert sha256_file(out) == source_hash, f"{label}: restored disk differs from the source"
                assert m.summary["device_size"] == dev.stat().st_size
            if label.startswith("e3backup export"):
                subprocess.run(["qemu-img", "check", "-q", "-f", "vhdx", str(out)], check=True)
            if label == "restic restore":
                assert (out / "disk.img").stat().st_size == dev.stat().st_size
                # e3backup fsyncs before it reports success; restic leaves the disk in the page
                # cache. Time restic's data reaching the disk too, for the like-for-like figure.
                t0 = time.perf_counter()
                subprocess.run(["sync"], check=True)
                synced = m.seconds + time.perf_counter() - t0
                runs["restic restore, then sync"].append(Measure(synced, float("nan"), {}))
            runs[label].append(m)
            print(f"{where} | run {n + 1} | {label}: {m.seconds:.2f} s", flush=True)
    drop_file(out)
    rows = []
    for label, _ in cases:
        ms = sorted(runs[label], key=lambda m: m.seconds)
        rows.append((where, label, ms[len(ms) // 2]))
    return rows


def table(rows: list[tuple[str, str, Measure]], size: int) -> str:
    out = [
        "| repository, disk | restore | time s | MB/s of disk | peak RSS MiB | vs restic restore |",
        "|---|---|---:|---:|---:|---:|",
    ]
    ref = {w: m.seconds for w, label, m in rows if label == "restic restore"}
    for where, label, m in rows:
        rss = "" if m.rss_mib != m.rss_mib else f"{m.rss_mib:.0f}"
        out.append(
            f"| {where} | {label} | {m.seconds:.2f} | {size / m.seconds / 1e6:.0f} | {rss} | "
            f"{ref[where] / m.seconds:.2f}x |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--size-gib", type=float, default=2)
    ap.add_argument("--disks", default="mixed,ext4", help="comma-separated: mixed, ext4")
    ap.add_argument("--s3", action="store_true", help="also run with both repositories on a local SeaweedFS")
    ap.add_argument("--no-local", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each restore; the table shows the median")
    ap.add_argument("--doc", action="store_true", help="append the table to docs/benchmarks.md")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="e3-image-restore-", dir=a.workdir))
    env = {**os.environ, "E3BACKUP_PASSWORD": PASSWORD, "RESTIC_PASSWORD": PASSWORD}
    size = int(a.size_gib * GiB)
    rows: list[tuple[str, str, Measure]] = []
    try:
        for disk in a.disks.split(","):
            dev = work / f"disk-{disk}"
            if disk == "mixed":
                make_full(dev, size)
            elif disk == "ext4":
                make_half_full_ext4(dev, size, work)
            else:
                sys.exit(f"unknown disk {disk!r}: expected mixed or ext4")
            if not a.no_local:
                repos = work / f"e3-{disk}", work / f"restic-{disk}"
                rows += run_case(f"local, {disk}", work, dev, env, str(repos[0]), str(repos[1]), a.repeat)
                for r in repos:
                    shutil.rmtree(r)
            if a.s3:
                sys.path.insert(0, str(ROOT))
                from tests.plugins.seaweedfs import SeaweedServer

                server = SeaweedServer(work / "seaweed")
                server.start()
                try:
                    s3env = {**env, **server.env()}
                    e3_url = server.url(server.make_bucket(f"e3-image-restore-{disk}"))
                    restic_url = server.url(server.make_bucket(f"restic-image-restore-{disk}"))
                    rows += run_case(f"SeaweedFS S3, {disk}", work, dev, s3env, e3_url, restic_url, a.repeat)
                finally:
                    server.stop()
                    shutil.rmtree(work / "seaweed", ignore_errors=True)
            dev.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = table(rows, size)
    print()
    print(text)
    if a.doc:
        with open(ROOT / "docs" / "benchmarks.md", "a") as f:
            f.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
