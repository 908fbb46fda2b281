"""Instant restore: the NBD export of an image snapshot and the boot of a backed-up disk.

    sudo .venv/bin/python bench/instant.py [--size-mib 1024] [--repeat 3] [--no-boot] [--doc]

A ``--size-mib`` disk (the ``image_backup`` bench's mixed device: 45 % random, 45 % text, 10 %
zero MiB) is backed up by ``e3backup image backup`` and by ``restic backup --stdin``. Then, the
tools taking turns ``--repeat`` times (the table shows medians), with the repository files in the
page cache:

- ``image serve`` on a unix socket, and the same snapshot through nbdkit's Python plugin
  (``bench/nbdkit_snapshot.py``, the same ``SnapshotDisk``): *ready* = process start to the
  socket accepting, *first byte* = process start to the first 4 KiB read by a minimal NBD client,
  *copy* = ``nbdcopy URI /dev/null`` (4 connections, the whole disk), *RSS* = the server's peak
  resident memory after the copy (``VmHWM``);
- ``image restore`` (raw, 8 workers) and ``restic dump`` of the same disk to a file.

Then (unless ``--no-boot``) the bootable test disk (``tests/plugins/bootdisk.py``) is backed up
and ``image boot --accel tcg`` (and ``kvm`` when it works here) is timed from the command to
the guest's marker on the serial console. ``--doc`` appends the tables to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_backup import MiB, make_full, warm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PASSWORD = "bench-password"
E3 = [sys.executable, "-m", "e3backup"]


def env() -> dict[str, str]:
    return {**os.environ, "E3BACKUP_PASSWORD": PASSWORD, "RESTIC_PASSWORD": PASSWORD}


def run(argv: list[str], **kw: object) -> float:
    t0 = time.perf_counter()
    kw.setdefault("stdout", subprocess.PIPE)
    p = subprocess.run(argv, env=env(), stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
    return time.perf_counter() - t0


def first_read(path: str) -> None:
    """A minimal NBD client: fixed newstyle, NBD_OPT_GO on the default export, one 4 KiB read."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rb")
    f.read(18)
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", 0x49484156454F5054, 7, 6) + struct.pack(">IH", 0, 0))
    while True:
        _, _, kind, n = struct.unpack(">QIII", f.read(20))
        f.read(n)
        if kind == 1:
            break
        if kind >= 1 << 31:
            raise SystemExit("the server refused NBD_OPT_GO")
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 1, 0, 4096))
    magic, err, _ = struct.unpack(">IIQ", f.read(16))
    if magic != 0x67446698 or err or len(f.read(4096)) != 4096:
        raise SystemExit("the first read failed")
    s.close()


def serve_case(argv: list[str], sock: Path) -> dict[str, float]:
    """Start a server, time readiness and the first byte, copy the disk, read its peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:  # the socket appears, then accepts
            if proc.poll() is not None:
                raise SystemExit(f"{argv[0]} exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                probe = socket.socket(socket.AF_UNIX)
                probe.connect(str(sock))
                probe.close()
                break
            except OSError:
                time.sleep(0.005)
        ready = time.perf_counter() - t0
        first_read(str(sock))
        first = time.perf_counter() - t0
        copy = run(["nbdcopy", f"nbd+unix:///?socket={sock}", "/dev/null"])
        rss = 0.0
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) / 1024
        return {"ready": ready, "first": first, "copy": copy, "rss": rss}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sock.unlink(missing_ok=True)


def boot_case(repo: Path, accel: str, marker: str) -> float:
    t0 = time.perf_counter()
    argv = [*E3, "-r", str(repo), "image", "boot", "latest", "--accel", accel, "--memory-mb", "256"]
    proc = subprocess.Popen(argv, env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if marker in line:
                return time.perf_counter() - t0
        raise SystemExit(f"image boot --accel {accel} ended without the marker")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-boot", action="store_true")
    ap.add_argument("--doc", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="e3b-instant-bench-", dir=args.workdir))
    try:
        size = args.size_mib * MiB
        disk = work / "disk.img"
        make_full(disk, size)
        repo, rrepo = work / "repo", work / "restic-repo"
        run([*E3, "-r", str(repo), "init"])
        run([*E3, "-r", str(repo), "image", "backup", str(disk)])
        run(["restic", "-r", str(rrepo), "init"])
        with open(disk, "rb") as f:
            run(["restic", "-r", str(rrepo), "backup", "--stdin", "--stdin-filename", "disk.img"], stdin=f)
        for p in [*repo.rglob("*"), *rrepo.rglob("*")]:
            if p.is_file():
                warm(p)
        sock = work / "nbd.sock"
        ours: list[dict[str, float]] = []
        kit: list[dict[str, float]] = []
        restores: list[float] = []
        dumps: list[float] = []
        for _ in range(args.repeat):
            ours.append(serve_case([*E3, "-r", str(repo), "image", "serve", "latest", "--nbd", f"unix:{sock}"], sock))
            plugin = str(ROOT / "bench" / "nbdkit_snapshot.py")
            kit_argv = ["nbdkit", "-f", "-U", str(sock), "python", plugin, f"repo={repo}", f"venv={sys.prefix}"]
            kit.append(serve_case(kit_argv, sock))
            out = work / "restored.img"
            restores.append(run([*E3, "-r", str(repo), "image", "restore", "latest", "--target", str(out)]))
            out.unlink()
            with open(out, "wb") as f:
                dumps.append(run(["restic", "-r", str(rrepo), "dump", "latest", "/disk.img"], stdout=f))
            out.unlink()

        def med(rows: list[dict[str, float]], key: str) -> float:
            return statistics.median(r[key] for r in rows)

        mib = size / MiB
        load = os.getloadavg()
        lines = [
            f"\n### Instant restore: NBD export of a {mib:.0f} MiB image snapshot "
            f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `bench/instant.py`, "
            f"medians of {args.repeat}; load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})\n",
            "| server / tool | ready | first byte | whole disk | throughput | peak RSS |",
            "|---|---|---|---|---|---|",
        ]
        for name, rows in (("`image serve` (ours) + `nbdcopy`", ours), ("nbdkit Python plugin + `nbdcopy`", kit)):
            lines.append(
                f"| {name} | {med(rows, 'ready'):.2f} s | {med(rows, 'first'):.2f} s | {med(rows, 'copy'):.2f} s | "
                f"{mib / med(rows, 'copy'):.0f} MiB/s | {med(rows, 'rss'):.0f} MiB |"
            )
        r, d = statistics.median(restores), statistics.median(dumps)
        lines.append(f"| `image restore` (raw, 8 workers) | | | {r:.2f} s | {mib / r:.0f} MiB/s | |")
        lines.append(f"| `restic dump` to a file | | | {d:.2f} s | {mib / d:.0f} MiB/s | |")
        if not args.no_boot:
            from tests.plugins.bootdisk import MARKER, build_boot_disk

            from e3backup.instant.machine import kvm_works

            boot = work / "boot.img"
            build_boot_disk(boot)
            brepo = work / "boot-repo"
            run([*E3, "-r", str(brepo), "init"])
            run([*E3, "-r", str(brepo), "image", "backup", str(boot)])
            tcg = statistics.median(boot_case(brepo, "tcg", MARKER) for _ in range(args.repeat))
            ok, why = kvm_works()
            kvm = f"{statistics.median(boot_case(brepo, 'kvm', MARKER) for _ in range(args.repeat)):.1f} s" if ok else (
                f"not usable here ({why})"
            )
            lines += [
                "",
                "| `image boot` of the 24 MiB test disk, command to guest marker on serial | time |",
                "|---|---|",
                f"| TCG (software emulation) | {tcg:.1f} s |",
                f"| KVM | {kvm} |",
            ]
        text = "\n".join(lines) + "\n"
        print(text)
        if args.doc:
            with open(ROOT / "docs" / "benchmarks.md", "a") as f:
                f.write(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
