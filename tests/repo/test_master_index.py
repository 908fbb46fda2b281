from __future__ import annotations

import hashlib

from e3backup.repo.blob import BlobType
from e3backup.repo.master_index import MasterIndex
from e3backup.repo.pack import PackedBlob


def _id(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest()


def test_lookup_before_and_after_compaction() -> None:
    idx = MasterIndex()
    idx.add_pack("a" * 64, [PackedBlob(BlobType.DATA, _id(i), i * 100, 100, 50) for i in range(1000)])
    idx.add_pack("b" * 64, [PackedBlob(BlobType.TREE, _id(5), 0, 77)])
    for compacted in (False, True):
        if compacted:
            idx.compact()
        loc = idx.lookup(BlobType.DATA, _id(7))
        assert loc is not None and loc.pack_id == "a" * 64 and loc.blob.offset == 700
        assert loc.blob.uncompressed_length == 50
        tree = idx.lookup(BlobType.TREE, _id(5))
        assert tree is not None and tree.pack_id == "b" * 64 and tree.blob.length == 77
        assert idx.lookup(BlobType.TREE, _id(6)) is None
        assert not idx.has(BlobType.DATA, _id(1000))
        assert len(idx) == 1001


def test_duplicates_are_kept_and_grouped_by_pack() -> None:
    idx = MasterIndex()
    idx.add_pack("a" * 64, [PackedBlob(BlobType.DATA, _id(1), 0, 40)])
    idx.add_pack("b" * 64, [PackedBlob(BlobType.DATA, _id(1), 0, 40), PackedBlob(BlobType.DATA, _id(2), 40, 40)])
    idx.compact()
    packs = idx.packs()
    assert [b.id for b in packs["b" * 64]] == [_id(1), _id(2)]
    assert idx.lookup(BlobType.DATA, _id(1)) is not None
    assert len(list(idx.entries())) == 3
