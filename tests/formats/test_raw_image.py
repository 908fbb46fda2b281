"""The sparse raw writer and the raw reader; a block device through a loop device."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from image_testlib import MiB, read_all

from e3backup.formats import RawReader, RawWriter, create_image_writer, is_zero, normalize_extents


def test_sparse_file_has_holes_where_zero(tmp_path: Path) -> None:
    size = 64 * MiB + 512
    out = tmp_path / "disk.raw"
    rng = random.Random(2)
    pieces = [(o, rng.randbytes(256 * 1024)) for o in (0, 10 * MiB, 40 * MiB + 4096)]
    pieces += [(o, bytes(MiB)) for o in range(20 * MiB, 30 * MiB, MiB)]  # zeros: never written
    rng.shuffle(pieces)
    with (
        create_image_writer("raw", out, size, [(o, len(d)) for o, d in pieces]) as w,
        ThreadPoolExecutor(4) as pool,
    ):
        list(pool.map(lambda p: w.write_at(*p), pieces))
    assert out.stat().st_size == size
    assert out.stat().st_blocks * 512 <= 3 * 256 * 1024 + 64 * 1024  # only the data is allocated
    expected = bytearray(size)
    for offset, data in pieces:
        expected[offset : offset + len(data)] = data
    with RawReader(out) as reader:
        assert read_all(reader) == expected
        extents = list(reader.allocated_extents())
        assert sum(n for _, n in extents) < 2 * MiB
        for offset, data in pieces:  # every non-zero piece lies inside a reported extent
            if not is_zero(data):
                assert any(o <= offset and offset + len(data) <= o + n for o, n in extents)


def test_existing_file_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "disk.raw"
    out.write_bytes(b"\xff" * 4 * MiB)
    with RawWriter(out, 2 * MiB) as w:
        w.write_at(MiB, b"\x01" * 512)
    data = out.read_bytes()
    assert len(data) == 2 * MiB and data.count(0) == 2 * MiB - 512


def test_reads_past_the_end_of_a_short_file_are_zero(tmp_path: Path) -> None:
    path = tmp_path / "short.raw"
    path.write_bytes(b"\x07" * 1000)
    with RawReader(path, virtual_size=4096) as reader:
        assert reader.read_at(0, 4096) == b"\x07" * 1000 + bytes(3096)
        with pytest.raises(ValueError, match="outside"):
            reader.read_at(4000, 100)


def test_normalize_and_is_zero() -> None:
    assert normalize_extents([(10, 5), (0, 4), (4, 3), (14, 10), (50, 0), (90, 20)], 100) == [
        (0, 7),
        (10, 14),
        (90, 10),
    ]
    big = bytearray(9 * MiB + 3)
    assert is_zero(big) and is_zero(memoryview(big)[5:]) and is_zero(b"")
    big[-1] = 1
    assert not is_zero(big)


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup for a loop device")
    backing = tmp_path / "backing.img"
    backing.write_bytes(b"\xee" * 8 * MiB)  # old content the restore must overwrite
    dev = subprocess.run(
        ["losetup", "--find", "--show", backing], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


@pytest.mark.root
def test_block_device_gets_zeros_written_and_zeroed_ranges(loop_device: str) -> None:
    with RawWriter(loop_device, 6 * MiB) as w:
        assert w.is_block_device
        w.write_at(0, bytes(4096))  # zeros are written on a device: it holds old data
        w.write_at(4096, b"\x01" * 4096)
        w.zero_range(MiB, MiB, how="write")
        w.zero_range(2 * MiB, MiB, how="zeroout")
        with pytest.raises(ValueError, match="outside"):
            w.write_at(6 * MiB, b"x")
    with RawReader(loop_device) as reader:
        assert reader.virtual_size == 8 * MiB
        assert reader.read_at(0, 8192) == bytes(4096) + b"\x01" * 4096
        assert reader.read_at(8192, MiB - 8192) == b"\xee" * (MiB - 8192)  # untouched
        assert reader.read_at(MiB, 2 * MiB) == bytes(2 * MiB)
        assert reader.read_at(3 * MiB, MiB) == b"\xee" * MiB


@pytest.mark.root
def test_block_device_too_small_is_refused(loop_device: str) -> None:
    from e3backup.errors import FormatError

    with pytest.raises(FormatError, match="device has 8388608 bytes"):
        RawWriter(loop_device, 9 * MiB)
