"""Peak memory (whole-process RSS) of e3backup and restic, the same commands on the same data, in one run.

    .venv/bin/python bench/memory.py [--workdir DIR] [--small] [--rows files-local,files-s3,...]
        [--repeat 3] [--e3-args "--max-memory 256M"] [--doc]

The rows are issue 29's table:

- ``files-local``: files backup of a tree of ~19k files / ~682 MB (copies of the Python standard
  library, 3,500 generated files of 4-64 KiB and one half-random file making up the rest) to a
  local repository;
- ``files-s3``: the same backup to S3 (a local SeaweedFS ``weed mini`` started by the bench);
- ``restore-s3``: restore of that S3 snapshot into an empty folder, on a fresh ext4 file system
  per run when the bench runs as root (ext4 skips inodes freed in the last minutes when it
  allocates: 19k creates right after the previous run's 19k deletes cost seconds of kernel
  time, for whichever tool comes next);
- ``image-restore``: a 1 GiB mixed image (45 % random, 45 % low-entropy, 10 % zeros in 1 MiB
  blocks) restored from a local repository, e3backup with 8 workers (``image restore``), restic
  ``restore`` of its ``--stdin`` snapshot;
- ``image-backup``: the backup of that image (e3backup ``image backup``, restic ``backup --stdin``).

``--small`` shrinks the data (one library copy, ~200 MB tree, 256 MiB image) for quick runs; the
default is the issue's sizes. Each command runs ``--repeat`` times, the tools taking turns; the
figures are the medians. Peak RSS comes from ``wait4`` on the tool's own process (its
``ru_maxrss``: resident anonymous and file pages, from outside the process), wall time too.
Repositories and data live in ``--workdir`` (page cache warm for both tools); everything but the
data sets is deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_backup import Popen4, make_full  # noqa: E402

MiB = 1 << 20
PASSWORD = "bench password"
E3 = [sys.executable, "-m", "e3backup"]
ROWS = ("files-local", "files-s3", "restore-s3", "image-restore", "image-backup")
LABELS = {
    "files-local": "files backup, local repository",
    "files-s3": "files backup, S3 (SeaweedFS)",
    "restore-s3": "files restore from S3",
    "image-restore": "image restore, 8 workers, local",
    "image-backup": "image backup, mixed, local",
}


@dataclass
class Sample:
    seconds: float
    rss_mib: float


@dataclass
class Row:
    name: str
    data: str
    runs: dict[str, list[Sample]] = field(default_factory=lambda: {"e3backup": [], "restic": []})

    def median(self, tool: str) -> Sample:
        s = self.runs[tool]
        return Sample(statistics.median(x.seconds for x in s), statistics.median(x.rss_mib for x in s))


def run(argv: list[str], env: dict[str, str], stdin: Path | None = None) -> Sample:
    """Run one command to the end; its wall time and peak RSS (``wait4``). A failure stops the bench."""
    subprocess.run(["sync"], check=True)
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL  # noqa: SIM115
    try:
        t0 = time.perf_counter()
        p = Popen4(argv, env=env, stdin=fin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = p.communicate()
        seconds = time.perf_counter() - t0
    finally:
        if stdin:
            fin.close()  # type: ignore[union-attr]
    if p.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed ({p.returncode}):\n{err.decode(errors='replace')[-3000:]}")
    assert p.rusage is not None
    return Sample(seconds, p.rusage.ru_maxrss / 1024)


# data sets ------------------------------------------------------------------------------------


def make_tree(dst: Path, copies: int, generated: int, total_mib: int) -> tuple[int, int]:
    """Library copies + ``generated`` small files + one half-random file up to ``total_mib``.
    Returns (files, bytes). Built once per work dir."""
    if not dst.exists():
        part = dst.with_name(dst.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        for i in range(copies):
            shutil.copytree(stdlib, part / f"lib{i}", symlinks=True, ignore=shutil.ignore_patterns("site-packages"))
        rnd = random.Random(29)
        text = b"".join(b"%06d memory budget line of text for the generated files\n" % i for i in range(2000))
        for i in range(generated):
            d = part / "gen" / f"d{i % 50}"
            d.mkdir(parents=True, exist_ok=True)
            n = rnd.randrange(4096, 65536)
            body = rnd.randbytes(n) if i % 3 == 0 else (text * (1 + n // len(text)))[:n]
            (d / f"f{i}.dat").write_bytes(body)
        used = tree_size(part)[1]
        rest = max(0, total_mib * MiB - used)
        with open(part / "big.bin", "wb") as f:
            for k in range(rest // MiB):
                f.write(rnd.randbytes(MiB) if k % 2 == 0 else (text * 20)[:MiB])
        part.rename(dst)
    return tree_size(dst)


def tree_size(path: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                files += 1
                size += os.path.getsize(p)
    return files, size


def warm(path: Path) -> None:
    """Read every file once: both tools start from the page cache."""
    paths = [path] if path.is_file() else [Path(d) / n for d, _, ns in os.walk(path) for n in ns]
    for p in paths:
        if not p.is_symlink():
            with open(p, "rb", buffering=0) as f:
                while f.read(16 * MiB):
                    pass


# the bench ------------------------------------------------------------------------------------


class Bench:
    def __init__(self, work: Path, e3_args: list[str], repeat: int) -> None:
        self.work = work
        self.e3_args = e3_args
        self.repeat = repeat
        self.env = {
            **os.environ,
            "E3BACKUP_PASSWORD": PASSWORD,
            "RESTIC_PASSWORD": PASSWORD,
            "XDG_CACHE_HOME": str(work / "cache"),
        }
        self.seq = 0
        self.server: object | None = None

    def scratch(self, name: str) -> Path:
        self.seq += 1
        return self.work / f"{name}-{self.seq}"

    def s3(self) -> tuple[dict[str, str], str, str]:
        """Fresh buckets on the bench's SeaweedFS (started on first use)."""
        from tests.plugins.seaweedfs import SeaweedServer

        if self.server is None:
            server = SeaweedServer(self.work / "seaweed")
            server.start()
            self.server = server
        s = self.server
        assert isinstance(s, SeaweedServer)
        self.seq += 1
        e3 = s.url(s.make_bucket(f"e3-mem-{self.seq}"))
        restic = s.url(s.make_bucket(f"restic-mem-{self.seq}"))
        return {**self.env, **s.env()}, e3, restic

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()  # type: ignore[attr-defined]

    def e3(self, repo: str, *args: str) -> list[str]:
        return [*E3, "-r", repo, *self.e3_args, *args]

    def restic(self, repo: str, *args: str) -> list[str]:
        return ["restic", "-r", repo, "--cache-dir", str(self.work / "restic-cache"), *args]

    def init(self, env: dict[str, str], e3_repo: str, restic_repo: str) -> None:
        subprocess.run([*E3, "-r", e3_repo, "init"], env=env, check=True, capture_output=True)
        subprocess.run(["restic", "-r", restic_repo, "init"], env=env, check=True, capture_output=True)

    def repos(self, s3: bool) -> tuple[dict[str, str], str, str]:
        if s3:
            return self.s3()
        a, b = self.scratch("e3-repo"), self.scratch("restic-repo")
        return self.env, str(a), str(b)

    def files_backup(self, row: Row, tree: Path, s3: bool) -> None:
        for _ in range(self.repeat):  # each run a first backup into a fresh repository
            env, e3_repo, restic_repo = self.repos(s3)
            self.init(env, e3_repo, restic_repo)
            row.runs["e3backup"].append(run(self.e3(e3_repo, "backup", str(tree)), env))
            row.runs["restic"].append(run(self.restic(restic_repo, "backup", str(tree)), env))
            self.drop(e3_repo, restic_repo)
            print(f"  {row.name}: e3backup {row.runs['e3backup'][-1]}, restic {row.runs['restic'][-1]}", flush=True)

    def files_restore(self, row: Row, tree: Path) -> None:
        env, e3_repo, restic_repo = self.s3()
        self.init(env, e3_repo, restic_repo)
        run(self.e3(e3_repo, "backup", str(tree)), env)
        run(self.restic(restic_repo, "backup", str(tree)), env)
        for _ in range(self.repeat):
            for tool, argv in (
                ("e3backup", self.e3(e3_repo, "restore", "latest", "--target", "{}")),
                ("restic", self.restic(restic_repo, "restore", "latest", "--target", "{}")),
            ):
                with self.fresh_target() as target:
                    row.runs[tool].append(run([str(target) if a == "{}" else a for a in argv], env))
            print(f"  {row.name}: e3backup {row.runs['e3backup'][-1]}, restic {row.runs['restic'][-1]}", flush=True)

    @contextlib.contextmanager
    def fresh_target(self) -> Iterator[Path]:
        """An empty restore target: on its own new ext4 file system (loop-mounted) as root, else a
        new folder of the work directory."""
        where = self.scratch("restore")
        if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
            yield where
            shutil.rmtree(where, ignore_errors=True)
            return
        img = where.with_suffix(".ext4")
        with open(img, "wb") as f:
            f.truncate(4 << 30)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
        where.mkdir()
        subprocess.run(["mount", "-o", "loop", str(img), str(where)], check=True)
        try:
            subprocess.run(["sync"], check=True)  # the previous run's writes are not this one's to pay
            yield where / "target"
        finally:
            subprocess.run(["umount", str(where)], check=True)
            img.unlink()
            where.rmdir()

    def image_backup(self, row: Row, dev: Path) -> None:
        for _ in range(self.repeat):
            env, e3_repo, restic_repo = self.repos(False)
            self.init(env, e3_repo, restic_repo)
            row.runs["e3backup"].append(run(self.e3(e3_repo, "image", "backup", str(dev)), env))
            row.runs["restic"].append(
                run(self.restic(restic_repo, "backup", "--stdin", "--stdin-filename", "disk.img"), env, stdin=dev)
            )
            self.drop(e3_repo, restic_repo)
            print(f"  {row.name}: e3backup {row.runs['e3backup'][-1]}, restic {row.runs['restic'][-1]}", flush=True)

    def image_restore(self, row: Row, dev: Path) -> None:
        env, e3_repo, restic_repo = self.repos(False)
        self.init(env, e3_repo, restic_repo)
        run(self.e3(e3_repo, "image", "backup", str(dev)), env)
        run(self.restic(restic_repo, "backup", "--stdin", "--stdin-filename", "disk.img"), env, stdin=dev)
        for _ in range(self.repeat):
            out = self.scratch("image-out")
            row.runs["e3backup"].append(
                run(self.e3(e3_repo, "image", "restore", "latest", "--target", str(out), "--workers", "8"), env)
            )
            if out.stat().st_size != dev.stat().st_size:
                raise SystemExit(f"e3backup restored {out.stat().st_size} bytes of {dev.stat().st_size}")
            out.unlink()
            row.runs["restic"].append(run(self.restic(restic_repo, "restore", "latest", "--target", str(out)), env))
            shutil.rmtree(out)
            print(f"  {row.name}: e3backup {row.runs['e3backup'][-1]}, restic {row.runs['restic'][-1]}", flush=True)
        self.drop(e3_repo, restic_repo)

    def drop(self, *repos: str) -> None:
        for r in repos:
            if not r.startswith("s3:"):
                shutil.rmtree(r, ignore_errors=True)


def table(rows: list[Row]) -> str:
    out = [
        "| command | data | e3backup peak RSS | restic peak RSS | ratio | e3backup time | restic time |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        e, t = r.median("e3backup"), r.median("restic")
        out.append(
            f"| {LABELS[r.name]} | {r.data} | {e.rss_mib:.0f} MiB | {t.rss_mib:.0f} MiB | "
            f"{e.rss_mib / t.rss_mib:.2f}x | {e.seconds:.1f} s | {t.seconds:.1f} s |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/var/tmp/e3bench-memory")
    ap.add_argument("--small", action="store_true", help="smaller data: ~200 MB tree, 256 MiB image")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each command; the table shows medians")
    ap.add_argument("--e3-args", default="", help="global options for every e3backup command (quoted)")
    ap.add_argument("--doc", action="store_true", help="append the table to docs/benchmarks.md")
    a = ap.parse_args()
    rows_wanted = [r for r in a.rows.split(",") if r]
    if unknown := set(rows_wanted) - set(ROWS):
        sys.exit(f"unknown rows: {', '.join(sorted(unknown))}")
    sys.path.insert(0, str(ROOT))
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    bench = Bench(run_dir, shlex.split(a.e3_args), a.repeat)
    rows: list[Row] = []
    try:
        if {"files-local", "files-s3", "restore-s3"} & set(rows_wanted):
            tree = work / ("tree-small" if a.small else "tree")
            nfiles, nbytes = make_tree(tree, 1 if a.small else 2, 500 if a.small else 3500, 200 if a.small else 682)
            warm(tree)
            data = f"{nfiles:,} files, {nbytes / 1e6:.0f} MB"
            for name in ("files-local", "files-s3", "restore-s3"):
                if name in rows_wanted:
                    print(f"{name} ({data})", flush=True)
                    row = Row(name, data)
                    if name == "restore-s3":
                        bench.files_restore(row, tree)
                    else:
                        bench.files_backup(row, tree, s3=name == "files-s3")
                    rows.append(row)
        if {"image-restore", "image-backup"} & set(rows_wanted):
            size = (256 if a.small else 1024) * MiB
            dev = work / f"image-{size >> 20}M"
            if not dev.exists():
                make_full(dev.with_suffix(".part"), size)
                dev.with_suffix(".part").rename(dev)
            warm(dev)
            data = f"{size >> 20} MiB mixed"
            for name in ("image-restore", "image-backup"):
                if name in rows_wanted:
                    print(f"{name} ({data})", flush=True)
                    row = Row(name, data)
                    (bench.image_restore if name == "image-restore" else bench.image_backup)(row, dev)
                    rows.append(row)
    finally:
        bench.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    load = os.getloadavg()
    text = table(rows)
    print()
    print(text)
    print(f"\n(e3backup options: {a.e3_args or 'none'}; medians of {a.repeat}; load average {load[0]:.1f})")
    if a.doc:
        with open(ROOT / "docs" / "benchmarks.md", "a") as f:
            f.write(f"\n{text}\n")


if __name__ == "__main__":
    main()
