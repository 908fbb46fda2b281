"""The span and config-listing rules the S3 and REST stores share (``store/remote.py``); the
stores themselves run them in the contract suite (S3) and through the gateway (REST)."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.errors import UsageError
from e3backup.store import FileType, Handle, open_store
from e3backup.store.remote import EMPTY, byte_range, list_config

H = Handle(FileType.PACK, "ab" * 32)


def test_a_loads_span_becomes_its_range_header() -> None:
    assert byte_range(H, 0, None) is None  # the whole object: no header
    assert byte_range(H, 10, None) == "bytes=10-"
    assert byte_range(H, 10, 5) == "bytes=10-14"
    assert byte_range(H, 0, 1) == "bytes=0-0"
    assert byte_range(H, 7, 0) == EMPTY
    for offset, length in ((-1, None), (0, -1)):
        with pytest.raises(UsageError, match=f"data/ab/{H.name}: negative offset or length"):
            byte_range(H, offset, length)


def test_the_config_is_listed_with_its_size_or_not_at_all(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "repo"))
    store.create()
    assert list(list_config(store)) == []
    store.save(Handle(FileType.CONFIG), b"x" * 42)
    assert list(list_config(store)) == [("config", 42)]
