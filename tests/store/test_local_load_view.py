"""``LocalStore.load_view`` (mapped reads for restores) returns what ``load`` returns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from e3backup.errors import NotFoundError
from e3backup.store import FileType, Handle, LocalStore
from e3backup.store.local import MAP_MIN

PACK_ID = "ab" * 32


@pytest.fixture
def store_with_pack(tmp_path: Path) -> tuple[LocalStore, bytes]:
    store = LocalStore(tmp_path / "repo")
    data = os.urandom(3 * 1024 * 1024 + 12345)
    store.save(Handle(FileType.PACK, PACK_ID), data)
    return store, data


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 100), (5, MAP_MIN - 1), (0, 2 * 1024 * 1024), (70_001, 1024 * 1024 + 3), (3 * 1024 * 1024, 12345)],
)
def test_ranges_equal_load(store_with_pack: tuple[LocalStore, bytes], offset: int, length: int) -> None:
    store, data = store_with_pack
    h = Handle(FileType.PACK, PACK_ID)
    view = store.load_view(h, offset, length)
    assert bytes(view) == store.load(h, offset, length) == data[offset : offset + length]


def test_range_past_the_end_is_short(store_with_pack: tuple[LocalStore, bytes]) -> None:
    store, data = store_with_pack
    h = Handle(FileType.PACK, PACK_ID)
    assert bytes(store.load_view(h, len(data) - 1000, 2 * 1024 * 1024)) == data[-1000:]
    assert bytes(store.load_view(h, len(data) + 10, 2 * 1024 * 1024)) == b""


def test_missing_pack_is_not_found(store_with_pack: tuple[LocalStore, bytes]) -> None:
    store, _ = store_with_pack
    with pytest.raises(NotFoundError):
        store.load_view(Handle(FileType.PACK, "cd" * 32), 0, MAP_MIN * 2)
