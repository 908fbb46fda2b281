"""Differencing VHDX chains: our reader against the expected overlay and against libvhdi.

The parent is made by qemu-img; the children by `vhdx_diff_builder` (no Debian tool writes
differencing VHDX). libvhdi (Debian python3-libvhdi) reads each chain as an independent judge.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from image_testlib import MiB, libvhdi_to_raw, make_sparse_raw, read_all, run
from vhdx_diff_builder import BlockSpec, build_differencing, expected_image

from e3backup.errors import InvalidVhdxError, ParentNotFoundError
from e3backup.formats import VhdxReader
from e3backup.formats.vhdx.constants import PAYLOAD_BLOCK_PARTIALLY_PRESENT

SIZE = 8 * MiB + 3 * 512  # 9 blocks of 1 MiB, the last one 1536 bytes
BLOCK = MiB
rng = random.Random(5)


def block_data() -> bytes:
    return rng.randbytes(BLOCK)


@pytest.fixture
def parent(tmp_path: Path) -> tuple[Path, bytes]:
    raw, vhdx = tmp_path / "parent.raw", tmp_path / "parent.vhdx"
    make_sparse_raw(raw, SIZE, [(0, 3 * MiB), (5 * MiB + 512, 2 * MiB), (SIZE - 1024, 1024)], seed=3)
    run("qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "block_size=1M", raw, vhdx)
    return vhdx, raw.read_bytes()


def child_blocks() -> dict[int, BlockSpec]:
    return {
        0: ("full", block_data()),
        1: ("partial", block_data(), [0, 1, 2, *range(100, 141), 2047]),
        3: ("zero",),  # zero in the parent too: libvhdi reads ZERO blocks from the parent
        4: ("partial", block_data(), list(range(1, 2048, 2))),
        6: ("partial", block_data(), []),  # present but no sector taken from the child
        8: ("partial", block_data(), [0, 2]),  # the short last block
    }


def parent_guid(path: Path) -> object:
    with VhdxReader(path) as reader:
        return reader.header.data_write_guid


def test_chain_of_two_reads_like_libvhdi_and_the_expected_overlay(
    tmp_path: Path, parent: tuple[Path, bytes]
) -> None:
    parent_path, parent_bytes = parent
    child = tmp_path / "child.vhdx"
    blocks = child_blocks()
    build_differencing(
        child,
        virtual_size=SIZE,
        block_size=BLOCK,
        parent_data_write_guid=parent_guid(parent_path),  # type: ignore[arg-type]
        locator={"relative_path": ".\\parent.vhdx", "absolute_win32_path": "C:\\VMs\\parent.vhdx"},
        blocks=blocks,
    )
    expected = expected_image(parent_bytes, blocks, BLOCK)
    assert expected != parent_bytes

    assert libvhdi_to_raw(tmp_path / "libvhdi.raw", child, parent_path) == SIZE
    assert (tmp_path / "libvhdi.raw").read_bytes() == expected
    with VhdxReader(child) as reader:
        assert reader.has_parent and reader.parent is not None
        assert read_all(reader) == expected
        assert read_all(reader, chunk=70_001) == expected  # reads that cut sectors and runs
        assert reader.read_at(MiB + 1000, 70_000) == expected[MiB + 1000 : MiB + 71_000]
        assert reader.block_state(1) == PAYLOAD_BLOCK_PARTIALLY_PRESENT
        assert list(reader.present_extents()) == [
            (0, 2 * MiB),
            (4 * MiB, MiB),
            (6 * MiB, MiB),
            (8 * MiB, 1536),
        ]
        for offset, length in [(0, 3 * MiB), (5 * MiB + 512, 2 * MiB), (SIZE - 1024, 1024)]:
            covered = any(o <= offset and offset + length <= o + n for o, n in reader.allocated_extents())
            assert covered, (offset, length)


def test_chain_of_three_with_parent_in_another_directory(tmp_path: Path, parent: tuple[Path, bytes]) -> None:
    parent_path, parent_bytes = parent
    child = tmp_path / "child.vhdx"
    blocks = child_blocks()
    child_guid = build_differencing(
        child,
        virtual_size=SIZE,
        block_size=BLOCK,
        parent_data_write_guid=parent_guid(parent_path),  # type: ignore[arg-type]
        locator={"relative_path": "parent.vhdx"},
        blocks=blocks,
    )
    (tmp_path / "snapshots").mkdir()
    grandchild = tmp_path / "snapshots" / "grandchild.vhdx"
    blocks2: dict[int, BlockSpec] = {
        1: ("full", block_data()),
        4: ("partial", block_data(), list(range(0, 2048, 3))),
        8: ("full", block_data()),
    }
    build_differencing(
        grandchild,
        virtual_size=SIZE,
        block_size=BLOCK,
        parent_data_write_guid=child_guid,
        locator={"relative_path": "..\\child.vhdx"},
        blocks=blocks2,
    )
    expected = expected_image(expected_image(parent_bytes, blocks, BLOCK), blocks2, BLOCK)
    libvhdi_to_raw(tmp_path / "libvhdi.raw", grandchild, child, parent_path)
    assert (tmp_path / "libvhdi.raw").read_bytes() == expected
    with VhdxReader(grandchild) as reader:
        assert reader.parent is not None and reader.parent.parent is not None
        assert read_all(reader) == expected


def test_zero_block_hides_the_parent(tmp_path: Path, parent: tuple[Path, bytes]) -> None:
    """PAYLOAD_BLOCK_ZERO means zeros ([MS-VHDX] 2.5.1.1), even over a parent's data.

    Ours alone judges this: libvhdi 20210425 reads a ZERO block of a differencing file from its parent.
    """
    parent_path, parent_bytes = parent
    child = tmp_path / "child.vhdx"
    blocks: dict[int, BlockSpec] = {0: ("zero",), 8: ("zero",)}
    build_differencing(
        child,
        virtual_size=SIZE,
        block_size=BLOCK,
        parent_data_write_guid=parent_guid(parent_path),  # type: ignore[arg-type]
        locator={"relative_path": "parent.vhdx"},
        blocks=blocks,
    )
    expected = expected_image(parent_bytes, blocks, BLOCK)
    assert parent_bytes[:BLOCK] != bytes(BLOCK) and expected[:BLOCK] == bytes(BLOCK)
    with VhdxReader(child) as reader:
        assert read_all(reader) == expected


def test_parent_found_beside_the_child_by_its_windows_file_name(
    tmp_path: Path, parent: tuple[Path, bytes]
) -> None:
    parent_path, parent_bytes = parent
    child = tmp_path / "child.vhdx"
    build_differencing(
        child,
        virtual_size=SIZE,
        block_size=BLOCK,
        parent_data_write_guid=parent_guid(parent_path),  # type: ignore[arg-type]
        locator={"absolute_win32_path": "D:\\Hyper-V\\Disks\\parent.vhdx"},
        blocks={},
    )
    with VhdxReader(child) as reader:
        assert read_all(reader) == parent_bytes


def test_parent_that_changed_is_refused(tmp_path: Path, parent: tuple[Path, bytes]) -> None:
    import uuid

    child = tmp_path / "child.vhdx"
    build_differencing(
        child,
        virtual_size=SIZE,
        block_size=BLOCK,
        parent_data_write_guid=uuid.uuid4(),
        locator={"relative_path": ".\\parent.vhdx"},
        blocks={},
    )
    with pytest.raises(InvalidVhdxError, match=r"DataWriteGuid .* parent_linkage expects"):
        VhdxReader(child)


def test_missing_parent(tmp_path: Path, parent: tuple[Path, bytes]) -> None:
    child = tmp_path / "child.vhdx"
    build_differencing(
        child,
        virtual_size=SIZE,
        block_size=BLOCK,
        parent_data_write_guid=parent_guid(parent[0]),  # type: ignore[arg-type]
        locator={"relative_path": ".\\elsewhere\\gone.vhdx"},
        blocks={},
    )
    with pytest.raises(ParentNotFoundError, match=r"gone\.vhdx"):
        VhdxReader(child)
    with VhdxReader(child, parent_path=str(parent[0])) as reader:  # the caller knows better
        assert read_all(reader) == parent[1]
