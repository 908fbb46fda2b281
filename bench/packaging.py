"""Start-up and backup speed of the single-file agent against the virtualenv, restic alongside.

    .venv/bin/python bench/packaging.py --exe dist/e3backup [--other NAME=PATH ...] [--repeat 5]

Rows: ``e3backup --version``; ``e3backup snapshots`` on a small repository (3 snapshots of a few
files, local); a files backup of a ~256 MiB tree (half random, half text, 2,000 small files and
a few large) into a new local repository. Each command runs ``--repeat`` times, the tools taking
turns, medians printed as a Markdown table with ``uptime``. ``--other`` adds executables built
another way (the Nuitka build, for the comparison in docs/packaging.md).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASSWORD = "bench password"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr.decode()[-2000:]}")
    return time.perf_counter() - t


def make_tree(root: Path) -> int:
    rng = random.Random(27)
    total = 0
    for i in range(2000):
        d = root / f"d{i % 40}"
        d.mkdir(parents=True, exist_ok=True)
        data = (f"line {i} of a small text file for the packaging bench\n" * rng.randint(20, 400)).encode()
        (d / f"f{i}.txt").write_bytes(data)
        total += len(data)
    for i in range(4):
        (root / f"big{i}.bin").write_bytes(os.urandom(32 << 20))
        lines = (f"{j} a log line of the bench\n".encode() for j in range(1_100_000))
        (root / f"text{i}.log").write_bytes(b"".join(lines))
        total += (32 << 20) + (root / f"text{i}.log").stat().st_size
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True, help="the single-file agent")
    ap.add_argument("--other", action="append", default=[], help="NAME=PATH of another executable build")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    venv_e3 = str(Path(sys.executable).parent / "e3backup")
    tools = {"venv": venv_e3, "pyinstaller": args.exe}
    tools.update(dict(o.split("=", 1) for o in args.other))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="e3b-pkg-bench-"))
    env = {**os.environ, "E3BACKUP_PASSWORD": PASSWORD, "RESTIC_PASSWORD": PASSWORD}
    small, tree = work / "small", work / "tree"
    (small / "s").mkdir(parents=True, exist_ok=True)
    (small / "s" / "a.txt").write_text("a small repository\n")
    repo = work / "small-repo"
    subprocess.run([venv_e3, "-r", str(repo), "init"], env=env, check=True, capture_output=True)
    for _ in range(3):
        subprocess.run([venv_e3, "-r", str(repo), "backup", str(small)], env=env, check=True, capture_output=True)
    size = make_tree(tree)
    rows: dict[str, dict[str, list[float]]] = {"--version": {}, "snapshots": {}, "backup": {}}
    for _ in range(args.repeat):
        for name, exe in tools.items():
            rows["--version"].setdefault(name, []).append(timed([exe, "--version"], env))
            rows["snapshots"].setdefault(name, []).append(timed([exe, "-r", str(repo), "snapshots"], env))
    backups = [*tools.items(), ("restic", shutil.which("restic") or "restic")]
    for i in range(max(1, args.repeat // 2)):
        for name, exe in backups:
            r = work / f"repo-{name}-{i}"
            if name == "restic":
                subprocess.run([exe, "-r", str(r), "init"], env=env, check=True, capture_output=True)
                cmd = [exe, "-r", str(r), "backup", "--no-cache", str(tree)]
            else:
                subprocess.run([exe, "-r", str(r), "init"], env=env, check=True, capture_output=True)
                cmd = [exe, "-r", str(r), "backup", str(tree)]
            rows["backup"].setdefault(name, []).append(timed(cmd, env))
            shutil.rmtree(r)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"tree: {size / (1 << 20):.0f} MiB; sizes: " + ", ".join(
        f"{n} {os.path.getsize(p) / (1 << 20):.1f} MiB" for n, p in tools.items() if n != "venv"))
    names = [n for n, _ in backups]
    print("| command | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row, got in rows.items():
        cells = []
        for n in names:
            if n not in got:
                cells.append("")
                continue
            med = statistics.median(got[n])
            cells.append(f"{med:.2f} s" + (f" ({size / (1 << 20) / med:.0f} MiB/s)" if row == "backup" else ""))
        print(f"| {row} | " + " | ".join(cells) + " |")
    if not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
