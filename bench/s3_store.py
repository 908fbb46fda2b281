"""Raw PUT/GET throughput of the S3 store against a local SeaweedFS (or any s3: URL).

    .venv/bin/python bench/s3_store.py                       # starts its own weed mini
    .venv/bin/python bench/s3_store.py --objects 64 --size-mib 4 --threads 8
    AWS_ACCESS_KEY_ID=.. AWS_SECRET_ACCESS_KEY=.. .venv/bin/python bench/s3_store.py --url s3:http://host:8333/bench

Measures our ``S3Store`` (checksums "when_required") and, for comparison, a plain boto3 client
with botocore's default request/response checksums. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from e3backup.store import FileType, Handle, open_store
from e3backup.store.s3_location import parse_s3_url


def _timed(threads: int, fn: Callable[[int], int], n: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(fn, range(n)))
    elapsed = time.perf_counter() - start
    return total / elapsed / 2**20


def run(url: str, creds: dict[str, str], objects: int, size: int, threads: int) -> dict[str, Any]:
    store = open_store(url, upload_connections=threads, **creds)
    store.create()
    payloads = [os.urandom(size) for _ in range(min(objects, 8))]
    names = []
    for i in range(objects):
        data = payloads[i % len(payloads)]
        names.append(hashlib.sha256(data + i.to_bytes(4, "big")).hexdigest())

    def put(i: int) -> int:
        data = payloads[i % len(payloads)]
        store.save(Handle(FileType.PACK, names[i]), data)
        return len(data)

    def get(i: int) -> int:
        return len(store.load(Handle(FileType.PACK, names[i])))

    def ranged(i: int) -> int:
        return len(store.load(Handle(FileType.PACK, names[i]), size // 4, size // 2))

    out: dict[str, Any] = {"objects": objects, "size_mib": size / 2**20, "threads": threads}
    out["put_mib_s"] = _timed(threads, put, objects)
    out["get_mib_s"] = _timed(threads, get, objects)
    out["ranged_get_mib_s"] = _timed(threads, ranged, objects)

    # the same PUTs through boto3 with botocore's default (CRC) checksums, for comparison
    loc = parse_s3_url(url)
    bucket = loc.bucket
    client = boto3.client(
        "s3", endpoint_url=loc.endpoint, region_name="us-east-1",
        aws_access_key_id=creds.get("access_key"), aws_secret_access_key=creds.get("secret_key"),
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=threads * 2),
    )

    def put_default(i: int) -> int:
        data = payloads[i % len(payloads)]
        client.put_object(Bucket=bucket, Key=f"bench-default-checksums/{i}", Body=data)
        return len(data)

    out["put_default_checksums_mib_s"] = _timed(threads, put_default, objects)
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", help="s3: URL; default: start a private SeaweedFS")
    ap.add_argument("--objects", type=int, default=64)
    ap.add_argument("--size-mib", type=float, default=4)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="repeat; the best round is reported")
    args = ap.parse_args()
    size = int(args.size_mib * 2**20)
    server = None
    try:
        if args.url:
            url, creds = args.url, {}
        else:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.plugins.seaweedfs import SeaweedServer

            server = SeaweedServer(Path(tempfile.mkdtemp(prefix="e3bench-weed-")))
            server.start()
            url = server.url(server.make_bucket("e3bench"), "repo")
            creds = server.store_options()
        rounds = [run(url, creds, args.objects, size, args.threads) for _ in range(args.rounds)]
    finally:
        if server is not None:
            server.stop(timeout=5)
    keys = ("put_mib_s", "get_mib_s", "ranged_get_mib_s", "put_default_checksums_mib_s")
    print(f"{args.objects} x {args.size_mib:g} MiB, {args.threads} threads, MiB/s per round")
    for k in keys:
        print(f"  {k:30s} " + " ".join(f"{r[k]:7.1f}" for r in rounds))
    best = dict(rounds[0], **{k: max(r[k] for r in rounds) for k in keys})
    print(json.dumps(best))


if __name__ == "__main__":
    main()
