"""Our reader on files qemu made: it must read exactly what `qemu-img convert -O raw` reads."""

from __future__ import annotations

import shutil
import struct
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from image_testlib import MiB, make_sparse_raw, qemu_to_raw, read_all, run

from e3backup.errors import InvalidVhdxError
from e3backup.formats import VhdxReader, open_image_reader
from e3backup.formats.crc32c import crc32c
from e3backup.formats.vhdx.constants import HEADER1_OFFSET, HEADER2_OFFSET, REGION_TABLE1_OFFSET

EXTENTS = [(0, 4096), (3 * MiB + 1024, 300_000), (17 * MiB - 512, 8192), (45 * MiB, 2 * MiB)]


def assert_reads_like_qemu(tmp_path: Path, vhdx: Path) -> VhdxReader:
    ref = tmp_path / "qemu.raw"
    qemu_to_raw(vhdx, ref)
    reader = VhdxReader(vhdx)
    assert reader.virtual_size == ref.stat().st_size
    assert read_all(reader) == ref.read_bytes()
    return reader


@pytest.mark.parametrize("block_size", [None, "1M", "32M", "256M"])
def test_reads_qemu_convert_output(tmp_path: Path, block_size: str | None) -> None:
    raw = tmp_path / "src.raw"
    make_sparse_raw(raw, 48 * MiB - 512, [*EXTENTS[:3], (45 * MiB, 2 * MiB + 512)])
    vhdx = tmp_path / "q.vhdx"
    opts = ["-o", f"block_size={block_size}"] if block_size else []
    run("qemu-img", "convert", "-f", "raw", "-O", "vhdx", *opts, raw, vhdx)
    with assert_reads_like_qemu(tmp_path, vhdx) as reader:
        assert reader.read_at(0, reader.virtual_size) == raw.read_bytes()
        # everything outside allocated_extents reads as zero
        data = raw.read_bytes()
        cursor = 0
        for offset, length in reader.allocated_extents():
            assert data[cursor:offset].count(0) == offset - cursor
            cursor = offset + length
        assert data[cursor:].count(0) == len(data) - cursor


def test_reads_qemu_fixed_with_writes(tmp_path: Path) -> None:
    vhdx = tmp_path / "fixed.vhdx"
    run("qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=fixed", vhdx, "24M")
    run("qemu-io", "-f", "vhdx", "-c", "write -P 0xab 1M 3M", "-c", "write -P 0x17 20000256 70000", vhdx)
    with assert_reads_like_qemu(tmp_path, vhdx) as reader:
        assert reader.fixed
        assert reader.read_at(MiB, 512) == b"\xab" * 512


def test_reads_qemu_dynamic_with_unaligned_writes(tmp_path: Path) -> None:
    vhdx = tmp_path / "dyn.vhdx"
    run("qemu-img", "create", "-q", "-f", "vhdx", "-o", "block_size=1M", vhdx, "9M")
    run(
        "qemu-io",
        "-f",
        "vhdx",
        "-c",
        "write -P 0xab 1000448 5120",  # straddles blocks 0 and 1
        "-c",
        "write -P 0xcd 8M 1M",  # the last block
        "-c",
        "write -z 8M 4096",  # zeroes within it
        vhdx,
    )
    with assert_reads_like_qemu(tmp_path, vhdx) as reader:
        assert reader.read_at(1000448, 5120) == b"\xab" * 5120
        assert reader.read_at(8 * MiB, 8192) == bytes(4096) + b"\xcd" * 4096


def test_parallel_reads(tmp_path: Path) -> None:
    raw, vhdx = tmp_path / "src.raw", tmp_path / "q.vhdx"
    make_sparse_raw(raw, 48 * MiB, EXTENTS)
    run("qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "block_size=1M", raw, vhdx)
    data = raw.read_bytes()
    offsets = list(range(0, 48 * MiB, 384 * 1024 + 512))
    with VhdxReader(vhdx) as reader, ThreadPoolExecutor(4) as pool:
        chunks = list(pool.map(lambda o: reader.read_at(o, min(700_000, 48 * MiB - o)), offsets))
    assert all(c == data[o : o + len(c)] for o, c in zip(offsets, chunks, strict=True))


def test_open_image_reader_detects_format(tmp_path: Path) -> None:
    raw, vhdx = tmp_path / "src.raw", tmp_path / "q.vhdx"
    make_sparse_raw(raw, 8 * MiB, [(MiB, 4096)])
    run("qemu-img", "convert", "-f", "raw", "-O", "vhdx", raw, vhdx)
    assert isinstance(open_image_reader(vhdx), VhdxReader)
    other = open_image_reader(raw)
    assert not isinstance(other, VhdxReader)
    assert read_all(other) == raw.read_bytes()


# -- damaged files ---------------------------------------------------------------------------------


def rewrite_header(path: Path, offset: int, **changes: object) -> None:
    """Change fields of the header at `offset` and fix its checksum, as a writer would."""
    with open(path, "r+b") as f:
        f.seek(offset)
        buf = bytearray(f.read(4096))
        if "log_guid" in changes:
            buf[48:64] = changes["log_guid"].bytes_le  # type: ignore[attr-defined]
        if "sequence" in changes:
            struct.pack_into("<Q", buf, 8, changes["sequence"])
        struct.pack_into("<I", buf, 4, 0)
        struct.pack_into("<I", buf, 4, crc32c(buf))
        f.seek(offset)
        f.write(buf)


def corrupt(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture
def qemu_vhdx(tmp_path: Path) -> tuple[Path, Path]:
    raw, vhdx = tmp_path / "src.raw", tmp_path / "q.vhdx"
    make_sparse_raw(raw, 8 * MiB, [(MiB, 8192)])
    run("qemu-img", "convert", "-f", "raw", "-O", "vhdx", raw, vhdx)
    return raw, vhdx


def test_a_log_to_replay_is_refused(qemu_vhdx: tuple[Path, Path]) -> None:
    _, vhdx = qemu_vhdx
    for offset in (HEADER1_OFFSET, HEADER2_OFFSET):
        rewrite_header(vhdx, offset, log_guid=uuid.uuid4())
    with pytest.raises(InvalidVhdxError, match="has a log to replay; open it with Hyper-V or qemu-img first"):
        VhdxReader(vhdx)


def test_one_damaged_header_falls_back_to_the_other(qemu_vhdx: tuple[Path, Path]) -> None:
    raw, vhdx = qemu_vhdx
    for offset in (HEADER1_OFFSET, HEADER2_OFFSET):
        copy = vhdx.with_suffix(f".{offset}.vhdx")
        shutil.copy(vhdx, copy)
        corrupt(copy, offset + 100)
        with VhdxReader(copy) as reader:
            assert reader.read_at(0, 8 * MiB) == raw.read_bytes()
    corrupt(vhdx, HEADER1_OFFSET + 100)
    corrupt(vhdx, HEADER2_OFFSET + 100)
    with pytest.raises(InvalidVhdxError, match=r"header at offset 65536: no valid header: CRC-32C"):
        VhdxReader(vhdx)


def test_higher_sequence_number_wins_and_equal_different_headers_are_refused(
    qemu_vhdx: tuple[Path, Path],
) -> None:
    _, vhdx = qemu_vhdx
    rewrite_header(vhdx, HEADER1_OFFSET, sequence=10)
    rewrite_header(vhdx, HEADER2_OFFSET, sequence=9, log_guid=uuid.uuid4())
    with VhdxReader(vhdx) as reader:  # header 2 has a log, but header 1 is current
        assert reader.header.sequence_number == 10
    rewrite_header(vhdx, HEADER2_OFFSET, sequence=10)
    with pytest.raises(InvalidVhdxError, match="two different headers"):
        VhdxReader(vhdx)


def test_damaged_region_table_falls_back_to_the_copy(qemu_vhdx: tuple[Path, Path]) -> None:
    raw, vhdx = qemu_vhdx
    corrupt(vhdx, REGION_TABLE1_OFFSET + 20)
    with VhdxReader(vhdx) as reader:
        assert reader.read_at(0, 8 * MiB) == raw.read_bytes()
    corrupt(vhdx, REGION_TABLE1_OFFSET + 0x10000 + 20)
    with pytest.raises(InvalidVhdxError, match="region table at offset 262148: CRC-32C"):
        VhdxReader(vhdx)


def test_not_a_vhdx(tmp_path: Path) -> None:
    path = tmp_path / "x.vhdx"
    path.write_bytes(b"conectix" + bytes(4096))
    with pytest.raises(InvalidVhdxError, match="file type identifier at offset 0"):
        VhdxReader(path)


def test_reads_outside_the_disk_are_refused(qemu_vhdx: tuple[Path, Path]) -> None:
    _, vhdx = qemu_vhdx
    with VhdxReader(vhdx) as reader, pytest.raises(ValueError, match="outside the virtual disk"):
        reader.read_at(8 * MiB - 512, 1024)
