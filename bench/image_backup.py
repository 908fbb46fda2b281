"""Disk image backup: e3backup vs ``restic backup --stdin`` on the same devices, in one run.

    sudo .venv/bin/python bench/image_backup.py [--workdir DIR] [--size-gib 2] [--chunk-sweep]
        [--big-gib 16] [--keep]

Builds its devices as sparse image files (page cache warm for both tools):
- ``empty``: a 2 GiB ext4 image (``mkfs.ext4 -d``) with ~40 MiB of files;
- ``full``: 2 GiB of mixed data in 1 MiB blocks: 45 % random (media, archives), 45 % low-entropy
  (16-symbol alphabet, compresses ~2x), 10 % zeros; every block unique;
- ``unchanged``: a second backup of ``full``;
- ``1% change``: 1 % of the 4 MiB chunks rewritten at scattered places, backed up by e3backup
  without and with a change map (``--changed-extents``) and by restic (which re-reads all).
Each tool runs as a subprocess; peak RSS comes from ``wait4``. Also the peak RSS of e3backup on a
16 GiB sparse device (no partition table: read in full, mostly holes). ``--chunk-sweep`` backs
up ``full`` with 1, 2 and 4 MiB chunks into fresh repositories. Everything is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30
PASSWORD = "bench-password"
E3 = [sys.executable, "-m", "e3backup"]


@dataclass
class Measure:
    seconds: float
    rss_mib: float
    summary: dict  # type: ignore[type-arg]
    cpu_seconds: float = float("nan")  # user + system time of the run (wall time on a loaded machine is mostly waiting)


class Popen4(subprocess.Popen):  # type: ignore[type-arg]
    """A Popen whose wait keeps the child's own rusage (``wait4``), so RSS is per run."""

    rusage = None

    def _try_wait(self, wait_flags: int):  # type: ignore[no-untyped-def]
        try:
            pid, sts, ru = os.wait4(self.pid, wait_flags)
        except ChildProcessError:
            return self.pid, 0
        if pid == self.pid:
            self.rusage = ru
        return pid, sts


def measured(argv: list[str], env: dict[str, str], stdin: Path | None = None) -> Measure:
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL  # noqa: SIM115
    try:
        t0 = time.perf_counter()
        p = Popen4(argv, env=env, stdin=fin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate()
        seconds = time.perf_counter() - t0
    finally:
        if stdin:
            fin.close()  # type: ignore[union-attr]
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}):\n{err.decode()[-3000:]}")
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {}
    rss = p.rusage.ru_maxrss / 1024 if p.rusage else float("nan")
    cpu = p.rusage.ru_utime + p.rusage.ru_stime if p.rusage else float("nan")
    return Measure(seconds, rss, summary, cpu)


# devices ---------------------------------------------------------------------------------------


def make_full(path: Path, size: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    table = bytes.maketrans(bytes(range(256)), bytes(b"etaoinshrdlu \n.,"[i % 16] for i in range(256)))
    with open(path, "wb") as f:
        f.truncate(size)
        for off in range(0, size, MiB):
            kind = rnd.random()
            if kind < 0.45:
                block = rnd.randbytes(MiB)
            elif kind < 0.90:
                block = rnd.randbytes(MiB).translate(table)
            else:
                continue
            f.seek(off)
            f.write(block)


def make_empty_ext4(path: Path, size: int, work: Path) -> None:
    src = work / "files"
    src.mkdir()
    rnd = random.Random(3)
    for i in range(40):
        (src / f"f{i}.bin").write_bytes(rnd.randbytes(MiB))
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(path)], check=True)
    shutil.rmtree(src)


def change_one_percent(path: Path, chunk: int, seed: int = 11) -> list[list[int]]:
    size = path.stat().st_size
    rnd = random.Random(seed)
    chunks = sorted(rnd.sample(range(size // chunk), max(1, size // chunk // 100)))
    changes = []
    with open(path, "r+b") as f:
        for c in chunks:
            off = c * chunk + rnd.randrange(0, chunk - 65536)
            f.seek(off)
            f.write(rnd.randbytes(65536))
            changes.append([off, 65536])
    return changes


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(16 * MiB):
            pass


# running ---------------------------------------------------------------------------------------


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = {**os.environ, "E3BACKUP_PASSWORD": PASSWORD, "RESTIC_PASSWORD": PASSWORD}
        self.rows: list[tuple[str, str, Measure, int, int]] = []

    def e3_repo(self, name: str) -> Path:
        r = self.work / f"e3-{name}"
        subprocess.run([*E3, "-r", str(r), "init"], env=self.env, check=True, capture_output=True)
        return r

    def restic_repo(self, name: str) -> Path:
        r = self.work / f"restic-{name}"
        subprocess.run(["restic", "-r", str(r), "init"], env=self.env, check=True, capture_output=True)
        return r

    def e3(self, repo: Path, dev: Path, *args: str) -> Measure:
        return measured([*E3, "-r", str(repo), "image", "backup", str(dev), "--json", *args], self.env)

    def restic(self, repo: Path, dev: Path) -> Measure:
        argv = [
            "restic",
            "-r",
            str(repo),
            "--cache-dir",
            str(self.work / "restic-cache"),
            "backup",
            "--json",
            "--stdin",
            "--stdin-filename",
            "disk.img",
        ]
        return measured(argv, self.env, stdin=dev)

    def case(self, label: str, dev: Path, e3: Measure, restic: Measure) -> None:
        size = dev.stat().st_size
        self.rows.append((label, "e3backup", e3, size, int(e3.summary.get("bytes_read", size))))
        self.rows.append((label, "restic", restic, size, size))

    def table(self) -> str:
        out = [
            "| case | tool | time s | engine s | MB/s of device | bytes read | added | peak RSS MiB | restic / e3 |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        e3_times: dict[str, float] = {}
        for label, tool, m, _size, _nread in self.rows:
            if tool == "e3backup":
                e3_times[label] = m.seconds
        for label, tool, m, size, nread in self.rows:
            added = m.summary.get("bytes_added", m.summary.get("data_added", 0))
            ratio = f"{m.seconds / e3_times[label]:.1f}x" if tool == "restic" and label in e3_times else ""
            engine = f"{m.summary['duration']:.2f}" if tool == "e3backup" else ""
            out.append(
                f"| {label} | {tool} | {m.seconds:.2f} | {engine} | {size / m.seconds / 1e6:.0f} | "
                f"{nread / 1e6:.1f} MB | {added / 1e6:.1f} MB | {m.rss_mib:.0f} | {ratio} |"
            )
        return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--size-gib", type=float, default=2)
    ap.add_argument("--big-gib", type=float, default=16)
    ap.add_argument("--chunk-sweep", action="store_true")
    ap.add_argument("--only-sweep", action="store_true")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="e3bench-image-"))
    work.mkdir(parents=True, exist_ok=True)
    size = int(a.size_gib * GiB)
    b = Bench(work)
    try:
        full = work / "full.img"
        make_full(full, size)
        warm(full)
        if a.chunk_sweep or a.only_sweep:
            print("## chunk size sweep (full mixed image, fresh repository each)")
            for cs in ("1M", "2M", "4M"):
                m = b.e3(b.e3_repo(f"sweep-{cs}"), full, "--chunk-size", cs)
                print(
                    f"chunk {cs}: {m.seconds:.2f} s  {size / m.seconds / 1e6:.0f} MB/s  "
                    f"stored {m.summary['bytes_stored'] / 1e6:.1f} MB  RSS {m.rss_mib:.0f} MiB",
                    flush=True,
                )
                shutil.rmtree(work / f"e3-sweep-{cs}")
            if a.only_sweep:
                return
        empty = work / "empty.img"
        make_empty_ext4(empty, size, work)
        warm(empty)
        e3r, rr = b.e3_repo("main"), b.restic_repo("main")
        b.case("mostly empty ext4", empty, b.e3(e3r, empty), b.restic(rr, empty))
        b.case("full, mixed data", full, b.e3(e3r, full), b.restic(rr, full))
        b.case("second, unchanged", full, b.e3(e3r, full), b.restic(rr, full))
        changes = change_one_percent(full, 4 * MiB)
        warm(full)
        cmap = work / "changes.json"
        cmap.write_text(json.dumps(changes))
        e3_nomap = b.e3(e3r, full)
        r_change = b.restic(rr, full)
        b.case("1% changed, no change map", full, e3_nomap, r_change)
        # the same change again, for the change-map run (its parent is the run just made)
        changes = change_one_percent(full, 4 * MiB, seed=12)
        cmap.write_text(json.dumps(changes))
        warm(full)
        b.case("1% changed, change map", full, b.e3(e3r, full, "--changed-extents", str(cmap)), b.restic(rr, full))
        full.unlink()
        empty.unlink()
        big = work / "big.img"
        with open(big, "wb") as f:
            f.truncate(int(a.big_gib * GiB))
            rnd = random.Random(5)
            for _ in range(64):
                f.seek(rnd.randrange(0, int(a.big_gib * GiB) - 4 * MiB))
                f.write(rnd.randbytes(4 * MiB))
        m = b.e3(b.e3_repo("big"), big)
        print(
            f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; cores: {os.cpu_count()}; "
            f"restic {subprocess.run(['restic', 'version'], capture_output=True, text=True).stdout.split()[1]}"
        )
        print(b.table())
        print(
            f"\n{a.big_gib:.0f} GiB sparse device (read in full, mostly holes): {m.seconds:.1f} s, "
            f"{big.stat().st_size / m.seconds / 1e6:.0f} MB/s, peak RSS {m.rss_mib:.0f} MiB"
        )
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
