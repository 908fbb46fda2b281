from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from pathlib import Path

import pytest

from e3backup.errors import IntegrityError
from e3backup.repo import Repository, master_index
from e3backup.repo.blob import BlobType
from e3backup.repo.index import IndexColumns, IndexFile, IndexPack
from e3backup.repo.master_index import MasterIndex
from e3backup.repo.pack import PackedBlob
from e3backup.store import FileType, LocalStore

from ..helpers import PASSWORD


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


# -- against a plain model ------------------------------------------------------------------------

def _model_lookup_ok(model: dict[tuple[BlobType, bytes], set[tuple[str, int, int, int]]], idx: MasterIndex) -> None:
    for (bt, bid), locs in model.items():
        loc = idx.lookup(bt, bid)
        assert loc is not None
        assert (loc.pack_id, loc.blob.offset, loc.blob.length, loc.blob.uncompressed_length) in locs
        assert loc.blob.id == bid and loc.blob.type == bt


def _random_id(rng: random.Random, ids: list[bytes]) -> bytes:
    r = rng.random()
    if ids and r < 0.3:
        return rng.choice(ids)  # a duplicate
    if ids and r < 0.45:  # same first 8 bytes as a known ID: exercises the equal-key run
        return rng.choice(ids)[:8] + rng.randbytes(24)
    return rng.randbytes(32)


@pytest.mark.parametrize("seed", range(6))
def test_random_operations_match_a_dict_model(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(master_index, "_COMPACT_AT", 37)
    rng = random.Random(seed)
    idx = MasterIndex()
    model: dict[tuple[BlobType, bytes], set[tuple[str, int, int, int]]] = {}
    rows: list[tuple[str, PackedBlob]] = []
    ids: list[bytes] = []
    packs: list[str] = []
    for step in range(60):
        op = rng.random()
        pack_id = rng.choice(packs) if packs and rng.random() < 0.1 else rng.randbytes(32).hex()
        blobs = []
        for j in range(rng.randint(0, 20)):
            bt = rng.choice((BlobType.DATA, BlobType.TREE))
            b = PackedBlob(bt, _random_id(rng, ids), j * 100, rng.randint(1, 2**32 - 1), rng.choice((0, 7, 2**32 - 1)))
            blobs.append(b)
        if op < 0.5:
            idx.add_pack(pack_id, blobs)
        else:  # as loaded from an index file (new or old format)
            doc = {"packs": [{"id": pack_id.upper() if op < 0.6 else pack_id, "blobs": [_blob_json(b) for b in blobs]}]}
            idx.add_index_json(doc if op < 0.9 else doc["packs"])
        packs.append(pack_id)
        for b in blobs:
            ids.append(b.id)
            model.setdefault((b.type, b.id), set()).add((pack_id, b.offset, b.length, b.uncompressed_length))
            rows.append((pack_id, b))
        if rng.random() < 0.2:
            idx.compact()
        if step % 10 == 9:
            _model_lookup_ok(model, idx)
        for _ in range(5):
            unknown = _random_id(rng, ids) if rng.random() < 0.5 else rng.randbytes(32)
            bt = rng.choice((BlobType.DATA, BlobType.TREE))
            assert idx.has(bt, unknown) == ((bt, unknown) in model)
    _model_lookup_ok(model, idx)
    assert len(idx) == len(rows)
    assert Counter((loc.pack_id, loc.blob) for loc in idx.entries()) == Counter(rows)
    assert sorted(idx.pack_ids()) == sorted(set(packs))
    assert len(idx.pack_ids()) == len(set(packs))
    assert all(idx.has_pack(p) for p in packs) and not idx.has_pack("00" * 32) and not idx.has_pack("zz")
    want: dict[str, set[PackedBlob]] = {}
    for pid, b in rows:
        want.setdefault(pid, set()).add(b)
    got = idx.packs()
    assert {p: set(bl) for p, bl in got.items()} == {p: s for p, s in want.items() if s}
    for bl in got.values():
        assert len(bl) == len(set(bl)) and [b.offset for b in bl] == sorted(b.offset for b in bl)


def _blob_json(b: PackedBlob) -> dict[str, object]:
    d: dict[str, object] = {"id": b.id.hex(), "type": b.type.json_name, "offset": b.offset, "length": b.length}
    if b.uncompressed_length:
        d["uncompressed_length"] = b.uncompressed_length
    return d


def test_index_json_is_visible_without_explicit_compact() -> None:
    idx = MasterIndex()
    idx.add_index_json({"packs": [{"id": "c" * 64, "blobs": [{"id": _id(1).hex(), "type": "tree", "offset": 0,
                                                             "length": 9}]}]})
    assert idx.has(BlobType.TREE, _id(1)) and not idx.has(BlobType.DATA, _id(1))
    assert idx.has_pack("c" * 64) and len(idx) == 1


@pytest.mark.parametrize(
    "blob",
    [
        {"id": "ab" * 31, "type": "data", "offset": 0, "length": 1},
        {"id": "ab" * 33, "type": "data", "offset": 0, "length": 1},
        {"id": "g" * 64, "type": "data", "offset": 0, "length": 1},
        {"id": "ab" * 31 + " a", "type": "data", "offset": 0, "length": 1},
        {"id": 5, "type": "data", "offset": 0, "length": 1},
        {"id": "ab" * 32, "type": "Data", "offset": 0, "length": 1},
        {"id": "ab" * 32, "type": "data", "offset": -1, "length": 1},
        {"id": "ab" * 32, "type": "data", "offset": 2**32, "length": 1},
        {"id": "ab" * 32, "type": "data", "offset": "0", "length": 1},
        {"id": "ab" * 32, "type": "data", "offset": 0},
        {"id": "ab" * 32, "type": "data", "offset": 0, "length": 1, "uncompressed_length": 1.5},
    ],
)
def test_malformed_index_json_is_an_integrity_error(blob: dict[str, object]) -> None:
    idx = MasterIndex()
    ok = {"id": "cd" * 32, "type": "data", "offset": 0, "length": 1}
    with pytest.raises(IntegrityError):
        idx.add_index_json({"packs": [{"id": "c" * 64, "blobs": [ok, blob]}]}, "x")
    with pytest.raises(IntegrityError):
        IndexColumns.from_json({"packs": [{"id": "c" * 63, "blobs": [ok]}]})
    with pytest.raises(IntegrityError):
        IndexColumns.from_json("nonsense")


def test_concurrent_has_and_add_pack() -> None:
    idx = MasterIndex()
    n_packs, per_pack = 300, 16
    errors: list[BaseException] = []
    added = threading.Event()

    def writer() -> None:
        try:
            for p in range(n_packs):
                blobs = [PackedBlob(BlobType.DATA, _id(p * per_pack + j), j * 10, 10) for j in range(per_pack)]
                idx.add_pack(f"{p:064x}", blobs)
                if p % 50 == 0:
                    idx.compact()
            added.set()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not added.is_set():
                # What was added before we looked must stay visible through every compaction.
                known = len(idx) // per_pack * per_pack
                for _ in range(50):
                    if known:
                        i = rng.randrange(known)
                        assert idx.has(BlobType.DATA, _id(i)), i
                    assert not idx.has(BlobType.TREE, _id(rng.randrange(10**6)))
        except BaseException as e:
            errors.append(e)

    import e3backup.repo.master_index as mi

    old = mi._COMPACT_AT
    mi._COMPACT_AT = 100
    try:
        threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        mi._COMPACT_AT = old
    assert not errors, errors[0]
    assert len(idx) == n_packs * per_pack
    assert all(idx.has(BlobType.DATA, _id(i)) for i in range(n_packs * per_pack))


def test_load_index_reads_many_files_and_reports_bad_ones(repo: Repository, repo_path: Path) -> None:
    want: dict[tuple[BlobType, bytes], tuple[str, int]] = {}
    for f in range(9):
        packs = []
        for p in range(5):
            pack_id = hashlib.sha256(b"pack %d %d" % (f, p)).hexdigest()
            blobs = [PackedBlob(BlobType.DATA if j % 3 else BlobType.TREE, _id(f * 1000 + p * 10 + j), j * 50, 50)
                     for j in range(4)]
            packs.append(IndexPack(pack_id, blobs))
            want.update({(b.type, b.id): (pack_id, b.offset) for b in blobs})
        repo.save_unpacked(FileType.INDEX, IndexFile(packs).to_json())
    bad = repo.save_unpacked(FileType.INDEX, {"packs": [{"id": "zz", "blobs": []}]})
    fresh = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    errors: list[str] = []
    fresh.load_index(workers=2, on_error=lambda name, e: errors.append(name))
    assert errors == [bad] and len(fresh.index_files) == 9
    assert len(fresh.index) == len(want) == 9 * 5 * 4
    for (bt, bid), (pack_id, off) in want.items():
        loc = fresh.index.lookup(bt, bid)
        assert loc is not None and (loc.pack_id, loc.blob.offset) == (pack_id, off)
    with pytest.raises(IntegrityError):
        Repository.open(LocalStore(repo_path), PASSWORD.encode()).load_index(workers=3)
