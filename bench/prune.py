"""Prune, e3backup against restic, on the same repository (made by e3backup).

    .venv/bin/python bench/prune.py [WORKDIR] [--backups 30] [--files 120] [--file-mib 2] [--churn 0.1]

Backs up a tree of random files ``--backups`` times, rewriting ``--churn`` of the files before
each run, so consecutive snapshots share most data. Copies the repository twice and runs
``forget --keep-last 5 --prune`` (default ``--max-unused 5%``) with e3backup on one copy and
restic (``--no-cache``) on the other; reports wall time and peak RSS of each process (/usr/bin/time),
checks both results with ``restic check``, and appends a "Prune" section to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from e3backup.engines.files import BackupOptions, run_backup
from e3backup.repo import Repository
from e3backup.store import LocalStore

PASSWORD = "bench-password"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def build(work: Path, backups: int, files: int, file_mib: int, churn: float) -> Path:
    repo, src = work / "template", work / "src"
    shutil.rmtree(work, ignore_errors=True)
    src.mkdir(parents=True)
    Repository.init(LocalStore(repo), PASSWORD.encode()).close()
    rng = random.Random(1)
    size = file_mib << 20
    for i in range(backups):
        names = range(files) if i == 0 else rng.sample(range(files), max(1, int(files * churn)))
        for n in names:
            # half random, half compressible text: realistic and exercises zstd
            body = os.urandom(size // 2) + (b"line %d of file %d\n" % (i, n)) * (size // 2 // 24)
            (src / f"file{n:04d}.bin").write_bytes(body)
        r = Repository.open(LocalStore(repo), PASSWORD.encode())
        run_backup(r, BackupOptions(paths=[str(src)], time_ns=1_700_000_000_000_000_000 + i * 3_600_000_000_000))
        r.close()
    return repo


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and output of one command, via /usr/bin/time.

    (``wait4`` on a child of this process would count this process's RSS: Linux carries the
    high-water mark across fork and exec.)
    """
    full = ["/usr/bin/time", "-f", "@@TIME %e %M", *cmd]
    p = subprocess.run(full, env={**os.environ, **env}, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    line = next(ln for ln in reversed(p.stderr.splitlines()) if ln.startswith("@@TIME "))
    wall, rss_kib = line.split()[1:3]
    return float(wall), int(rss_kib) / 1024, p.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", nargs="?", default="/tmp/e3-bench-prune")
    ap.add_argument("--backups", type=int, default=30)
    ap.add_argument("--files", type=int, default=120)
    ap.add_argument("--file-mib", type=int, default=2)
    ap.add_argument("--churn", type=float, default=0.1)
    ap.add_argument("--no-docs", action="store_true")
    a = ap.parse_args()
    work = Path(a.work)
    t0 = time.monotonic()
    tpl = build(work, a.backups, a.files, a.file_mib, a.churn)
    build_s = time.monotonic() - t0
    ours, theirs = work / "e3", work / "restic"
    shutil.copytree(tpl, ours)
    shutil.copytree(tpl, theirs)
    before = du(tpl / "data")
    env = {"E3BACKUP_PASSWORD": PASSWORD, "RESTIC_PASSWORD": PASSWORD}
    e3_cmd = [sys.executable, "-m", "e3backup", "-r", str(ours), "forget", "--keep-last", "5", "--prune"]
    restic_cmd = ["restic", "-r", str(theirs), "--no-cache", "forget", "--keep-last", "5", "--prune"]
    e3_s, e3_rss, _ = measure(e3_cmd, env)
    r_s, r_rss, _ = measure(restic_cmd, env)
    for repo in (ours, theirs):
        measure(["restic", "-r", str(repo), "--no-cache", "check"], env)
    e3_after, r_after = du(ours / "data"), du(theirs / "data")
    mib = 1 << 20
    rows = [
        ("e3backup", e3_s, e3_rss, e3_after),
        ("restic 0.14", r_s, r_rss, r_after),
    ]
    cmd = f"--backups {a.backups} --files {a.files} --file-mib {a.file_mib} --churn {a.churn}"
    table = "\n".join(f"| {n} | {s:.2f} | {rss:.0f} | {after / mib:.0f} |" for n, s, rss, after in rows)
    section = f"""
## Prune

`bench/prune.py` ({time.strftime("%Y-%m-%d")}, 2 shared cores, local disk): {a.backups} backups of {a.files}
files of {a.file_mib} MiB (half random, half text), {a.churn:.0%} of the files rewritten before each backup;
repository {before / mib:.0f} MiB of packs (built by e3backup in {build_s:.0f} s). Two copies; on each
`forget --keep-last 5 --prune` (default `--max-unused 5%`), restic with `--no-cache`. Wall time and peak RSS from
`/usr/bin/time`. One run each; treat as ±30 %. Both results pass `restic check`.

| tool | seconds | peak RSS MiB | packs after, MiB |
|---|---|---|---|
{table}

Command: `.venv/bin/python bench/prune.py {cmd}`
"""
    print(section)
    if not a.no_docs:
        DOCS.parent.mkdir(exist_ok=True)
        if not DOCS.exists():
            DOCS.write_text("# Benchmarks\n")
        DOCS.write_text(DOCS.read_text().rstrip("\n") + "\n" + section)


if __name__ == "__main__":
    main()
