"""Shared test helpers: sparse raw images with known data, and qemu-img as the judge."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

MiB = 1024 * 1024
GiB = 1024 * MiB


def run(*args: str | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.fspath(a) for a in args], capture_output=True, text=True, check=check)


def make_sparse_raw(path: Path, size: int, extents: list[tuple[int, int]], seed: int = 1) -> dict[int, bytes]:
    """A sparse file of `size` bytes with random data at `extents`; returns what was written."""
    rng = random.Random(seed)
    written = {}
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, length in extents:
            data = rng.randbytes(length)
            f.seek(offset)
            f.write(data)
            written[offset] = data
    return written


def qemu_check(path: Path) -> None:
    result = run("qemu-img", "check", "-f", "vhdx", path, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No errors were found on the image." in result.stdout


def qemu_compare(raw: Path, vhdx: Path) -> None:
    result = run("qemu-img", "compare", "-f", "raw", "-F", "vhdx", raw, vhdx, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Images are identical." in result.stdout


def qemu_info(path: Path) -> dict[str, object]:
    info: dict[str, object] = json.loads(run("qemu-img", "info", "--output=json", path).stdout)
    return info


def qemu_to_raw(image: Path, raw: Path, fmt: str = "vhdx") -> None:
    run("qemu-img", "convert", "-f", fmt, "-O", "raw", image, raw)


def files_equal(a: Path, b: Path, chunk: int = 4 * MiB) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True


def read_all(reader: object, chunk: int = 4 * MiB) -> bytes:
    size: int = reader.virtual_size  # type: ignore[attr-defined]
    out = bytearray()
    for offset in range(0, size, chunk):
        out += reader.read_at(offset, min(chunk, size - offset))  # type: ignore[attr-defined]
    return bytes(out)


_LIBVHDI_DUMP = """
import sys, pyvhdi
def open_chain(paths):
    files = []
    for p in paths:
        f = pyvhdi.file()
        f.open(p)
        files.append(f)
    for child, parent in zip(files, files[1:]):
        child.set_parent(parent)
    return files
chain = open_chain(sys.argv[2:])  # keep every file referenced: a freed parent is closed
top = chain[0]
size = top.get_media_size()
with open(sys.argv[1], "wb") as out:
    out.truncate(size)
    pos = 0
    while pos < size:
        data = top.read_buffer_at_offset(min(4 << 20, size - pos), pos)
        if data.count(0) != len(data):
            out.seek(pos)
            out.write(data)
        pos += len(data)
print(size)
"""


def libvhdi_to_raw(raw: Path, *chain: Path) -> int:
    """Read a VHDX (and its parents, child first) with libvhdi (Debian python3-libvhdi) into `raw`.

    An independent judge where qemu cannot be one: qemu has no 4 KiB-sector or differencing VHDX.
    """
    result = run("/usr/bin/python3", "-c", _LIBVHDI_DUMP, raw, *chain, check=False)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())
