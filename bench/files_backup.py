"""Files engine benchmark: e3backup vs restic vs borg on the same data, in one run.

    .venv/bin/python bench/files_backup.py [--workdir /var/tmp/e3bench] [--small-copies 5] [--big-mib 2048]

Datasets: (a) many small files (copies of the Python standard library), (b) one big file of
mixed compressible and random data. For each tool: first backup, second (unchanged) backup,
full restore; wall seconds, MB/s of source data, ratio to restic, peak RSS of the tool's process.
The page cache is warm for every tool alike (the data is read once before timing).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

PASSWORD = "bench password"
ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float]:
    """Run a command; returns (seconds, peak RSS MiB of the process tree's largest process).

    Dirty pages left by the step before (the data set just written, a restore) are flushed
    first: otherwise their write-back lands on whichever tool runs next.
    """
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{err}")
    return dt, ru.ru_maxrss / 1024


def free_page_cache() -> None:
    """Start with free memory (when root): with RAM full of page cache from earlier runs, every
    new page a tool touches is reclaimed first, which measured +30 % on e3backup's first backup
    (more buffers than restic's) and made the comparison depend on what ran before."""
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        print("note: not root, page cache not dropped; results depend on free memory", file=sys.stderr)


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            fp = os.path.join(dirpath, f)
            if not os.path.islink(fp):
                total += os.path.getsize(fp)
    return total


def make_small(dst: Path, copies: int) -> None:
    if dst.exists():
        return
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for i in range(copies):
        shutil.copytree(stdlib, dst / f"copy{i}", symlinks=True, ignore=shutil.ignore_patterns("site-packages"))


def make_big(dst: Path, mib: int) -> None:
    if dst.exists() and dst.stat().st_size == mib << 20:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(7)
    text = b"".join(b"%08d the quick brown fox jumps over the lazy dog %d\n" % (i, i * 7) for i in range(20000))
    with open(dst, "wb") as f:
        for i in range(mib):
            f.write(rnd.randbytes(1 << 20) if i % 2 == 0 else (text * 2)[: 1 << 20])


def warm(path: Path) -> None:
    """Read every file once so that all tools start from the page cache.

    (Not ``tar cf /dev/null``: GNU tar notices /dev/null and skips reading the contents, so the
    first tool to run paid the disk reads.)"""
    for dirpath, _, files in os.walk(path):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            with open(p, "rb", buffering=0) as f:
                while f.read(1 << 20):
                    pass


S3: dict[str, object] = {}  # set by --s3: the running server


class Tool:
    name = ""

    def __init__(self, work: Path) -> None:
        self.repo: Path | str = work / f"repo-{self.name}"
        self.env = {**os.environ}
        self.round = 0

    def reset(self) -> None:
        if S3:
            server = S3["server"]
            self.round += 1
            self.repo = server.url(server.make_bucket(f"{self.name}-{self.round}"))  # type: ignore[attr-defined]
            self.env.update(server.env())  # type: ignore[attr-defined]
            return
        shutil.rmtree(self.repo, ignore_errors=True)


class E3(Tool):
    name = "e3backup"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.env.update(E3BACKUP_PASSWORD=PASSWORD)
        self.exe = [sys.executable, "-m", "e3backup"]

    def init(self) -> None:
        self.env["E3BACKUP_REPOSITORY"] = str(self.repo)
        run([*self.exe, "init"], self.env)

    def backup(self, src: Path) -> tuple[float, float]:
        return run([*self.exe, "backup", str(src)], self.env)

    def restore(self, target: Path) -> tuple[float, float]:
        return run([*self.exe, "restore", "latest", "--target", str(target)], self.env)


class Restic(Tool):
    name = "restic"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.env.update(RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=str(work / "restic-cache"))

    def init(self) -> None:
        self.env["RESTIC_REPOSITORY"] = str(self.repo)
        run(["restic", "init"], self.env)

    def backup(self, src: Path) -> tuple[float, float]:
        return run(["restic", "backup", str(src)], self.env)

    def restore(self, target: Path) -> tuple[float, float]:
        return run(["restic", "restore", "latest", "--target", str(target)], self.env)


class Borg(Tool):
    name = "borg"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.env.update(
            BORG_REPO=str(self.repo),
            BORG_PASSPHRASE=PASSWORD,
            BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
            BORG_BASE_DIR=str(work / "borg-base"),
        )
        self.n = 0

    def reset(self) -> None:
        super().reset()
        shutil.rmtree(Path(self.env["BORG_BASE_DIR"]), ignore_errors=True)

    def init(self) -> None:
        run(["borg", "init", "-e", "repokey"], self.env)

    def backup(self, src: Path) -> tuple[float, float]:
        self.n += 1
        return run(["borg", "create", "-C", "zstd,3", f"::a{self.n}", str(src)], self.env)

    def restore(self, target: Path) -> tuple[float, float]:
        target.mkdir(parents=True)
        return run(["borg", "extract", f"::a{self.n}"], self.env, cwd=target)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/var/tmp/e3bench-files")
    ap.add_argument("--small-copies", type=int, default=5)
    ap.add_argument("--big-mib", type=int, default=2048)
    ap.add_argument("--tools", default="e3backup,restic,borg")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--s3", action="store_true", help="repositories on a local SeaweedFS S3 server")
    ap.add_argument("--datasets", default="small,big")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    datasets = {
        "small files": work / "data-small",
        "big mixed file": work / "data-big",
    }
    if "small" not in args.datasets:
        del datasets["small files"]
    else:
        make_small(datasets["small files"], args.small_copies)
    if "big" not in args.datasets:
        del datasets["big mixed file"]
    else:
        make_big(datasets["big mixed file"] / "big.bin", args.big_mib)
    if args.s3:
        sys.path.insert(0, str(ROOT))
        from tests.plugins.seaweedfs import SeaweedServer

        shutil.rmtree(work / "seaweed", ignore_errors=True)  # fresh buckets every run
        server = SeaweedServer(work / "seaweed")
        server.start()
        S3["server"] = server
    free_page_cache()
    tools = {t.name: t for t in (E3(work), Restic(work), Borg(work)) if t.name in args.tools.split(",")}
    results = []
    for ds_name, src in datasets.items():
        size = tree_bytes(src)
        nfiles = sum(len(f) for _, _, f in os.walk(src))
        warm(src)
        for tool in tools.values():
            tool.reset()
            tool.init()
            row = {"dataset": ds_name, "files": nfiles, "bytes": size, "tool": tool.name}
            row["first_s"], row["first_rss"] = tool.backup(src)
            row["second_s"], row["second_rss"] = tool.backup(src)
            target = work / f"restore-{tool.name}"
            shutil.rmtree(target, ignore_errors=True)
            row["restore_s"], row["restore_rss"] = tool.restore(target)
            shutil.rmtree(target, ignore_errors=True)
            row["repo_bytes"] = 0 if args.s3 else tree_bytes(Path(tool.repo))
            results.append(row)
            print(json.dumps(row), flush=True)
            tool.reset()
    if args.s3:
        server.stop()
    print()
    print(table(results))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1))


def table(results: list[dict[str, object]]) -> str:
    lines = [
        "| data | tool | first backup | unchanged backup | restore | peak RSS (MiB) b/b/r | repo size |",
        "|---|---|---|---|---|---|---|",
    ]
    ref = {
        (r["dataset"], k): r[k] for r in results if r["tool"] == "restic" for k in ("first_s", "second_s", "restore_s")
    }
    for r in results:
        mb = r["bytes"] / 1e6  # type: ignore[operator]
        cells = []
        for k in ("first_s", "second_s", "restore_s"):
            s = r[k]
            base = ref.get((r["dataset"], k))
            ratio = f" (x{base / s:.2f})" if base and r["tool"] != "restic" else ""  # type: ignore[operator]
            cells.append(f"{s:.1f} s, {mb / s:.0f} MB/s{ratio}")  # type: ignore[operator]
        rss = f"{r['first_rss']:.0f}/{r['second_rss']:.0f}/{r['restore_rss']:.0f}"
        lines.append(
            f"| {r['dataset']} ({r['files']} files, {mb:.0f} MB) | {r['tool']} | "
            + " | ".join(cells)
            + f" | {rss} | {r['repo_bytes'] / 1e6:.0f} MB |"
        )  # type: ignore[operator]
    lines.append("")
    lines.append("(xN = speed relative to restic: >1 means faster than restic)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
