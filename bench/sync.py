"""One-way sync to S3: e3backup sync against rclone sync, aws s3 sync and s3cmd sync.

    .venv/bin/python bench/sync.py                               # 10,000 small files and 1 GiB
    .venv/bin/python bench/sync.py --small 2000 --big-mib 256 --tools e3backup,rclone

Starts its own SeaweedFS (``weed mini`` on 127.0.0.1), makes the two data sets of issue 20 (N
files of 1-10 KB in 100 folders; one random file of ``--big-mib`` MiB), and for each tool and
data set syncs into a fresh bucket twice: the first sync, then the unchanged second one. Every
tool gets 8 parallel transfers where it has the knob. Each first sync is checked (object count
and bytes). Credentials go in environment variables or a 0600 config file, never on a command
line. Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.plugins.seaweedfs import SeaweedServer

TRANSFERS = 8


def make_small(root: Path, n: int) -> None:
    for i in range(n):
        d = root / f"d{i % 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.txt").write_bytes(os.urandom(1000 + (i * 37) % 9000))


def make_big(root: Path, mib: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "big.bin", "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}


def commands(tool: str, src: Path, server: SeaweedServer, bucket: str, work: Path) -> tuple[list[str], dict[str, str]]:
    env = clean_env()
    if tool == "e3backup":
        env.update(server.env(), E3BACKUP_CACHE_DIR=str(work / "e3cache"))
        return [sys.executable, "-m", "e3backup.cli.main", "--upload-connections", str(TRANSFERS), "sync",
                str(src), server.url(bucket)], env
    if tool == "rclone":
        env.update(RCLONE_CONFIG="/dev/null", RCLONE_CONFIG_B_TYPE="s3", RCLONE_CONFIG_B_PROVIDER="Other",
                   RCLONE_CONFIG_B_ENDPOINT=server.endpoint, RCLONE_CONFIG_B_ACCESS_KEY_ID=server.access_key,
                   RCLONE_CONFIG_B_SECRET_ACCESS_KEY=server.secret_key)
        return ["rclone", "sync", str(src), f"B:{bucket}", "--transfers", str(TRANSFERS), "--checkers", "16",
                "--fast-list"], env
    if tool == "aws":
        cfg = work / "aws-config"
        cfg.write_text(f"[default]\nregion = us-east-1\ns3 =\n  max_concurrent_requests = {TRANSFERS}\n")
        env.update(server.env(), AWS_CONFIG_FILE=str(cfg), AWS_DEFAULT_REGION="us-east-1")
        return ["aws", "s3", "sync", str(src), f"s3://{bucket}", "--endpoint-url", server.endpoint,
                "--only-show-errors"], env
    if tool == "s3cmd":
        cfg = work / "s3cmd.cfg"
        host = server.endpoint.split("://", 1)[1]
        cfg.write_text(f"[default]\naccess_key = {server.access_key}\nsecret_key = {server.secret_key}\n"
                       f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\nsignature_v2 = False\n")
        cfg.chmod(0o600)
        return ["s3cmd", "-c", str(cfg), "sync", "--no-progress", "--delete-removed", f"{src}/",
                f"s3://{bucket}/"], env
    raise SystemExit(f"unknown tool {tool}")


def available(tool: str) -> bool:
    if tool == "e3backup":
        return True
    exe = shutil.which(tool)
    if exe is None:
        return False
    return subprocess.run([exe, "--version"], capture_output=True).returncode == 0


def bucket_totals(server: SeaweedServer, bucket: str) -> tuple[int, int]:
    n = size = 0
    for page in server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", ()):
            n += 1
            size += obj["Size"]
    return n, size


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({p.returncode}): {p.stderr[-2000:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=10_000, help="number of small files")
    ap.add_argument("--big-mib", type=int, default=1024, help="size of the big file in MiB")
    ap.add_argument("--tools", default="e3backup,rclone,aws,s3cmd")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    base = Path(args.workdir or tempfile.mkdtemp(prefix="e3bench-sync-"))
    base.mkdir(parents=True, exist_ok=True)
    server = SeaweedServer(base / "weed")
    server.start()
    results: list[dict[str, Any]] = []
    try:
        sets = {"small": base / "small", "big": base / "big"}
        make_small(sets["small"], args.small)
        make_big(sets["big"], args.big_mib)
        for name, src in sets.items():
            files = sum(len(f) for _, _, f in os.walk(src))
            size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
            for tool in args.tools.split(","):
                if not available(tool):
                    print(f"{tool}: not installed, skipped", file=sys.stderr)
                    continue
                work = base / f"work-{tool}-{name}"
                work.mkdir(exist_ok=True)
                bucket = server.make_bucket()
                cmd, env = commands(tool, src, server, bucket, work)
                first = timed(cmd, env)
                assert bucket_totals(server, bucket) == (files, size), (tool, name)
                second = timed(cmd, env)
                row = {"set": name, "tool": tool, "files": files, "bytes": size, "first_s": round(first, 2),
                       "unchanged_s": round(second, 2), "first_mib_s": round(size / first / 2**20, 1)}
                results.append(row)
                print(f"{name:6} {tool:9} first {first:7.2f} s  unchanged {second:6.2f} s", file=sys.stderr, flush=True)
    finally:
        server.stop(timeout=15)
        if args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)
    print("| data set | tool | first sync | unchanged sync |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['set']} ({r['files']} files, {r['bytes'] / 2**20:.0f} MiB) | {r['tool']} | "
              f"{r['first_s']} s ({r['first_mib_s']} MiB/s) | {r['unchanged_s']} s |")
    print(json.dumps({"bench": "sync", "transfers": TRANSFERS, "results": results}))


if __name__ == "__main__":
    main()
