"""Our VHDX files, judged by qemu-img: check clean, compare equal to the raw image, right size."""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from image_testlib import (
    GiB,
    MiB,
    files_equal,
    libvhdi_to_raw,
    make_sparse_raw,
    qemu_check,
    qemu_compare,
    qemu_info,
    run,
)

from e3backup.errors import InvalidVhdxError, UnallocatedWriteError
from e3backup.formats import VhdxOptions, VhdxReader, VhdxWriter
from e3backup.formats.vhdx.constants import (
    PAYLOAD_BLOCK_FULLY_PRESENT,
    PAYLOAD_BLOCK_NOT_PRESENT,
)
from e3backup.formats.vhdx.layout import BAT_OFFSET


def export(raw: Path, out: Path, written: dict[int, bytes], options: VhdxOptions, workers: int = 4) -> None:
    """What the restore does: allocation known up front, then shuffled writes from several threads."""
    size = raw.stat().st_size
    allocated = [(offset, len(data)) for offset, data in written.items()]
    pieces = []
    for offset, data in written.items():  # split into 64 KiB writes, like restore segments
        for i in range(0, len(data), 64 * 1024):
            pieces.append((offset + i, data[i : i + 64 * 1024]))
    random.Random(7).shuffle(pieces)
    with VhdxWriter(out, size, allocated, options) as writer, ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda p: writer.write_at(*p), pieces))


CASES = [
    # virtual size, block size, logical sector, physical sector
    pytest.param(100 * MiB + 3 * 512, MiB, 512, 4096, id="1MiB-blocks-odd-size"),
    pytest.param(70 * MiB + 4096, 32 * MiB, 512, 4096, id="default-blocks-short-last-block"),
    pytest.param(40 * MiB + 8192, 8 * MiB, 4096, 4096, id="4k-sectors"),
    pytest.param(3 * MiB, 256 * MiB, 512, 512, id="256MiB-block-larger-than-disk"),
]


@pytest.mark.parametrize(("size", "block", "logical", "physical"), CASES)
def test_qemu_finds_our_vhdx_equal_to_raw(
    tmp_path: Path, size: int, block: int, logical: int, physical: int
) -> None:
    extents = [(0, 4096), (5 * MiB + 512, 70000), (size // 2, MiB + 4096), (size - 8192, 8192)]
    extents = [(o - o % 512, n) for o, n in extents if o + n <= size]
    raw, vhdx = tmp_path / "disk.raw", tmp_path / "disk.vhdx"
    written = make_sparse_raw(raw, size, extents)
    export(raw, vhdx, written, VhdxOptions(block, logical, physical))

    if logical == 512:
        qemu_check(vhdx)
        qemu_compare(raw, vhdx)
        info = qemu_info(vhdx)
        assert info["format"] == "vhdx"
        assert info["virtual-size"] == size
    else:  # qemu opens only 512-byte logical sectors: libvhdi judges this one
        assert libvhdi_to_raw(tmp_path / "libvhdi.raw", vhdx) == size
        assert files_equal(tmp_path / "libvhdi.raw", raw)
    with VhdxReader(vhdx) as reader:
        assert reader.read_at(0, size) == raw.read_bytes()
        assert (reader.block_size, reader.logical_sector_size, reader.physical_sector_size) == (
            block,
            logical,
            physical,
        )


def test_larger_than_chunk_ratio_times_block_size(tmp_path: Path) -> None:
    """> 4 GiB: BAT entries past the first sector bitmap entry (chunk ratio 128 with 32 MiB blocks)."""
    size = 4 * GiB + 96 * MiB + 1536  # 131 blocks of 32 MiB, the last one short
    extents = [(0, MiB), (4 * GiB - 4096, 8192), (4 * GiB + 40 * MiB, 4096), (size - 1536, 1536)]
    raw, vhdx = tmp_path / "big.raw", tmp_path / "big.vhdx"
    written = make_sparse_raw(raw, size, extents)
    export(raw, vhdx, written, VhdxOptions())

    qemu_check(vhdx)
    qemu_compare(raw, vhdx)
    assert qemu_info(vhdx)["virtual-size"] == size
    with VhdxReader(vhdx) as reader:
        g = reader.geometry
        assert g.chunk_ratio == 128 and g.payload_blocks == 132
        assert g.bat_entries == 132 + 1  # one sector bitmap entry, interleaved after block 127
        for offset, data in written.items():
            assert reader.read_at(offset, len(data)) == data
        assert reader.read_at(2 * GiB, MiB) == bytes(MiB)
        # blocks 0, 127, 128, 129 (the 8 KiB straddles 127/128), 131
        present = [b for b in range(g.payload_blocks) if reader.block_state(b) == PAYLOAD_BLOCK_FULLY_PRESENT]
        assert present == [0, 127, 128, 129, 131]
    assert os.stat(vhdx).st_blocks * 512 < 64 * MiB  # sparse: payload holes stay holes


def test_payload_only_for_allocated_blocks_in_block_order(tmp_path: Path) -> None:
    size = 20 * MiB
    out = tmp_path / "d.vhdx"
    data = os.urandom(4096)
    with VhdxWriter(out, size, [(9 * MiB, 4096), (2 * MiB + 10, 5)], VhdxOptions(block_size=MiB)) as w:
        w.write_at(9 * MiB, data)  # block 2 is allocated but never written: reads as zeros
    with VhdxReader(out) as r:
        states = [r.block_state(b) for b in range(20)]
        assert [b for b, s in enumerate(states) if s != PAYLOAD_BLOCK_NOT_PRESENT] == [2, 9]
        payload = BAT_OFFSET + MiB
        assert r._bat[2] >> 20 << 20 == payload and r._bat[9] >> 20 << 20 == payload + MiB
        assert r.read_at(9 * MiB, 4096) == data
        assert r.read_at(2 * MiB, MiB) == bytes(MiB)
    assert out.stat().st_size == BAT_OFFSET + MiB + 2 * MiB
    qemu_check(out)


def test_non_zero_write_to_unallocated_block_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "d.vhdx"
    with VhdxWriter(out, 8 * MiB, [(0, MiB)], VhdxOptions(block_size=MiB)) as w:
        w.write_at(3 * MiB, bytes(MiB))  # zeros to an unallocated block: silently skipped
        w.write_at(MiB - 512, bytes(1024))  # zeros straddling into an unallocated block: fine
        with pytest.raises(UnallocatedWriteError, match="block 4"):
            w.write_at(4 * MiB + 100, b"\x01")
        with pytest.raises(ValueError, match="outside"):
            w.write_at(8 * MiB - 1, b"\0\0")
    size_before = out.stat().st_size
    qemu_check(out)
    assert size_before == BAT_OFFSET + MiB + MiB


def test_failed_export_leaves_no_valid_vhdx(tmp_path: Path) -> None:
    out = tmp_path / "d.vhdx"
    with pytest.raises(RuntimeError), VhdxWriter(out, 8 * MiB, None, VhdxOptions(block_size=MiB)) as w:
        w.write_at(0, b"x" * 512)
        raise RuntimeError("restore failed")
    with pytest.raises(InvalidVhdxError, match="file type identifier"):
        VhdxReader(out)
    assert qemu_info(out)["format"] == "raw"


def test_fixed_subformat(tmp_path: Path) -> None:
    size = 10 * MiB + 512
    raw, vhdx = tmp_path / "f.raw", tmp_path / "f.vhdx"
    written = make_sparse_raw(raw, size, [(MiB, 4096)])
    export(raw, vhdx, written, VhdxOptions(block_size=MiB, fixed=True))
    qemu_check(vhdx)
    qemu_compare(raw, vhdx)
    with VhdxReader(vhdx) as r:
        assert r.fixed
        assert all(r.block_state(b) == PAYLOAD_BLOCK_FULLY_PRESENT for b in range(11))


def test_qemu_can_write_into_our_file(tmp_path: Path) -> None:
    """Our file is a normal dynamic VHDX to qemu: it allocates new blocks after our payload."""
    out = tmp_path / "d.vhdx"
    with VhdxWriter(out, 16 * MiB, [(0, 4096)], VhdxOptions(block_size=MiB)) as w:
        w.write_at(0, b"\x11" * 4096)
    run("qemu-io", "-f", "vhdx", "-c", "write -P 0x22 8M 64k", out)
    qemu_check(out)
    with VhdxReader(out) as r:
        assert r.read_at(0, 4096) == b"\x11" * 4096
        assert r.read_at(8 * MiB, 65536) == b"\x22" * 65536
        assert r.read_at(4096, 4096) == bytes(4096)


def test_sector_size_multiple_required() -> None:
    with pytest.raises(ValueError, match="multiple of the sector size"):
        VhdxWriter("/nonexistent/never-created.vhdx", 1000)
