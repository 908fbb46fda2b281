"""A source tree that exercises names and sizes, and the judges: what a destination holds."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from e3backup.engines.sync.s3_target import parse_mtime

#: Names people really have: spaces, unicode (NFC and NFD), shell and URL specials, leading
#: dashes and dots, very long components.
AWKWARD = [
    "a b c.txt", "100% done.txt", "plus+sign.txt", "question?.txt", "hash#tag.txt", "amp&ersand.txt",
    "semi;colon.txt", "quote'single.txt", 'quote"double.txt', "tilde~.txt",
    "-leading-dash", ".hidden", "ünïcødé 日本語.txt", "emoji 😀.txt", "cafe\u0301 nfd.txt",
    "x" * 200 + ".txt", "brackets [1] (2) {3}.txt", "equals=and,comma.txt", "dollar$.txt",
    "at@sign.txt", "caret^.txt", "tab\tinside.txt",
]


def make_tree(root: Path, *, big: int = 0, backslash: bool = False) -> None:
    """Nested folders, empty files, awkward names, and a file of ``big`` bytes when asked."""
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(AWKWARD + (["back\\slash.txt"] if backslash else [])):
        (root / name).write_bytes(f"{name}\n".encode() * (i + 1))
    deep = root / "d1" / "d 2" / "d3" / "ñ4" / "d5"
    deep.mkdir(parents=True)
    (deep / "deep.bin").write_bytes(os.urandom(70_000))
    (root / "d1" / "empty").write_bytes(b"")
    (root / "empty at top").write_bytes(b"")
    for i in range(30):
        (root / "many" / f"{i % 3}").mkdir(parents=True, exist_ok=True)
        (root / "many" / f"{i % 3}" / f"f{i:02d}.dat").write_bytes(os.urandom(100 * i))
    if big:
        with open(root / "big.bin", "wb") as f:
            block = os.urandom(1 << 20)
            left = big
            while left:
                n = min(left, len(block))
                f.write(block[:n])
                left -= n
                block = block[1:] + block[:1]  # no two MiB alike


def md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            h.update(piece)
    return h.hexdigest()


def source_listing(root: Path, prefix: str = "") -> dict[str, tuple[int, str, int]]:
    """key -> (size, MD5, mtime_ns) of every regular file under ``root``."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink() or not p.is_file():
                continue
            key = prefix + p.relative_to(root).as_posix()
            out[key] = (st.st_size, md5_file(p), st.st_mtime_ns)
    return out


def bucket_listing(client: Any, bucket: str, prefix: str = "") -> dict[str, tuple[int, str, int | None]]:
    """key -> (size, MD5 of the downloaded bytes, mtime from the metadata) of every object."""
    out = {}
    pfx = prefix.strip("/") + "/" if prefix.strip("/") else ""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=pfx):
        for obj in page.get("Contents", ()):
            resp = client.get_object(Bucket=bucket, Key=obj["Key"])
            data = resp["Body"].read()
            mtime = resp.get("Metadata", {}).get("mtime")
            out[obj["Key"][len(pfx):]] = (len(data), hashlib.md5(data, usedforsecurity=False).hexdigest(),
                                          parse_mtime(mtime) if mtime else None)
    return out
