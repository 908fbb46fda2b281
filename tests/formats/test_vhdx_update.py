"""Writing into existing VHDX files (the simulated Hyper-V guest): qemu-img judges the dynamic
files, libvhdi (Debian python3-libvhdi) the differencing children we create."""

from __future__ import annotations

import random
from pathlib import Path

from image_testlib import MiB, libvhdi_to_raw, run

from e3backup.formats import VhdxReader
from e3backup.formats.vhdx.differencing import create_differencing
from e3backup.formats.vhdx.update import VhdxUpdater

SIZE = 24 * MiB


def test_updater_writes_keep_a_qemu_file_clean_and_identical(tmp_path: Path) -> None:
    disk = tmp_path / "d.vhdx"
    run("qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=dynamic,block_size=1M", disk, str(SIZE))
    rng = random.Random(3)
    expected = bytearray(SIZE)
    with VhdxReader(disk) as r:
        guid = r.header.data_write_guid
    with VhdxUpdater(disk) as u:
        for offset, length in ((0, 4096), (MiB - 512, 2048), (5 * MiB + 7 * 512, 3 * MiB), (SIZE - 512, 512),
                               (5 * MiB, 512)):  # into a new block, across blocks, the last sector, a rewrite
            data = rng.randbytes(length)
            u.write_at(offset, data)
            expected[offset : offset + length] = data
    raw = tmp_path / "expected.raw"
    raw.write_bytes(bytes(expected))
    assert "No errors were found" in run("qemu-img", "check", "-f", "vhdx", disk).stdout
    assert "Images are identical" in run("qemu-img", "compare", "-f", "vhdx", "-F", "raw", disk, raw).stdout
    with VhdxReader(disk) as r:
        assert r.header.data_write_guid != guid  # changed before the first write, as [MS-VHDX] asks


def test_a_child_we_create_reads_through_to_its_parent_in_libvhdi(tmp_path: Path) -> None:
    parent, child = tmp_path / "base.vhdx", tmp_path / "base_1.avhdx"
    run("qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=dynamic,block_size=1M", parent, str(SIZE))
    rng = random.Random(4)
    expected = bytearray(SIZE)
    with VhdxUpdater(parent) as u:
        data = rng.randbytes(3 * MiB)
        u.write_at(2 * MiB, data)
        expected[2 * MiB : 5 * MiB] = data
    create_differencing(child, parent)
    with VhdxUpdater(child) as u:
        data = rng.randbytes(5000)
        u.write_at(3 * MiB + 100, data)  # inside a parent block: the block is copied up, then written
        expected[3 * MiB + 100 : 3 * MiB + 5100] = data
    with VhdxReader(child) as r:
        assert r.read_at(0, SIZE) == bytes(expected)
        assert list(r.present_extents()) == [(3 * MiB, MiB)]
    assert libvhdi_to_raw(tmp_path / "libvhdi.raw", child, parent) == SIZE
    assert (tmp_path / "libvhdi.raw").read_bytes() == bytes(expected)
