"""The one contract every store keeps (``store/base.py``), run against each backend.

Local directory and S3 (a real SeaweedFS server) must behave the same for everything the
repository relies on: atomic saves, ranged reads, listing only ID names, not-found errors.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e3backup.errors import NotFoundError
from e3backup.store import FileType, Handle, Store, open_store
from tests.plugins.seaweedfs import SeaweedServer

MakeStore = Callable[[str], Store]
_seq = itertools.count()


def _id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def contract_bucket(s3_server: SeaweedServer) -> str:
    return s3_server.make_bucket()


@pytest.fixture(params=["local", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """``make(prefix)`` opens a store; stores made in one test share one container."""
    opened: list[Store] = []
    if request.param == "local":
        def make(prefix: str) -> Store:
            s = open_store(str(tmp_path / "repos" / prefix))
            opened.append(s)
            return s
    else:
        server: SeaweedServer = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("contract_bucket")
        base = f"t{next(_seq)}-{os.urandom(3).hex()}"

        def make(prefix: str) -> Store:
            s = open_store(server.url(bucket, f"{base}/{prefix}"), **server.store_options())
            opened.append(s)
            return s
    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    s = make_store("repo")
    s.create()
    return s


def test_fresh_store_lists_nothing(store: Store) -> None:
    for t in FileType:
        assert list(store.list(t)) == []


@pytest.mark.parametrize("t", list(FileType))
def test_save_load_stat_list_each_type(store: Store, t: FileType) -> None:
    data = os.urandom(1000) + t.value.encode()
    h = Handle(t) if t is FileType.CONFIG else Handle(t, _id(data))
    store.save(h, data)
    assert store.load(h) == data
    assert store.stat(h) == len(data)
    assert list(store.list(t)) == [(h.name or "config", len(data))]
    for other in FileType:
        if other is not t:
            assert list(store.list(other)) == []


def test_ranged_load(store: Store) -> None:
    data = os.urandom(100_000)
    h = Handle(FileType.PACK, _id(data))
    store.save(h, data)
    assert store.load(h, 0, 10) == data[:10]
    assert store.load(h, 500, 1234) == data[500:1734]
    assert store.load(h, 99_990) == data[99_990:]
    assert store.load(h, 99_990, 50) == data[99_990:], "a range past the end returns what exists"
    assert store.load(h, 100_000) == b""
    assert store.load(h, 100_000, 10) == b""
    assert store.load(h, 7, 0) == b""


def test_large_object_round_trip(store: Store) -> None:
    data = os.urandom(5 * 1024 * 1024 + 17)
    h = Handle(FileType.PACK, _id(data))
    store.save(h, memoryview(data))
    assert store.load(h) == data
    assert store.load(h, len(data) - 100, 100) == data[-100:]


def test_load_view_equals_ranged_load(store: Store) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    h = Handle(FileType.PACK, _id(data))
    store.save(h, data)
    for offset, length in ((0, 100), (70_001, 2 * 1024 * 1024), (len(data) - 10, 1024 * 1024)):
        assert bytes(store.load_view(h, offset, length)) == data[offset : offset + length]


def test_save_file_streams_the_whole_file_whatever_its_position(store: Store, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    h = Handle(FileType.PACK, _id(data))
    with open(tmp_path / "pack", "w+b") as f:
        f.write(data)  # the file position is left at the end
        store.save_file(h, f, len(data))
        store.save_file(h, f, len(data))  # again, e.g. a retry: same object
    assert store.load(h) == data
    assert list(store.list(FileType.PACK)) == [(h.name, len(data))]


def test_missing_object_errors_name_it(store: Store) -> None:
    h = Handle(FileType.SNAPSHOT, "ab" * 32)
    for call in (lambda: store.load(h), lambda: store.load(h, 5, 10), lambda: store.stat(h),
                 lambda: store.remove(h), lambda: store.load(h, 0, 0)):
        with pytest.raises(NotFoundError, match="snapshots/abab"):
            call()


def test_remove(store: Store) -> None:
    a, b = b"first object", b"second object"
    ha, hb = Handle(FileType.INDEX, _id(a)), Handle(FileType.INDEX, _id(b))
    store.save(ha, a)
    store.save(hb, b)
    store.remove(ha)
    assert list(store.list(FileType.INDEX)) == [(hb.name, len(b))]
    with pytest.raises(NotFoundError):
        store.load(ha)
    assert store.load(hb) == b


def test_saving_same_content_twice_keeps_one_object(store: Store) -> None:
    data = os.urandom(4096)
    h = Handle(FileType.PACK, _id(data))
    store.save(h, data)
    store.save(h, data)
    assert store.load(h) == data
    assert list(store.list(FileType.PACK)) == [(h.name, len(data))]


def test_list_skips_names_that_are_not_ids(store: Store) -> None:
    good = b"good"
    store.save(Handle(FileType.KEY, _id(good)), good)
    store.save(Handle(FileType.KEY, "not-an-id"), b"junk")
    store.save(Handle(FileType.KEY, _id(b"x").upper()), b"upper case is not an ID")
    store.save(Handle(FileType.KEY, _id(b"y") + "-tmp-1234"), b"a temp name")
    assert list(store.list(FileType.KEY)) == [(_id(good), 4)]


def test_packs_listed_across_subdirectories(store: Store) -> None:
    blobs = [os.urandom(100 + i) for i in range(12)]
    for b in blobs:
        store.save(Handle(FileType.PACK, _id(b)), b)
    assert sorted(store.list(FileType.PACK)) == sorted((_id(b), len(b)) for b in blobs)


def test_prefixes_keep_repositories_apart(make_store: MakeStore) -> None:
    one, two = make_store("one"), make_store("one-two")
    one.create()
    two.create()
    a, b = b"in repository one", b"in repository two"
    one.save(Handle(FileType.SNAPSHOT, _id(a)), a)
    two.save(Handle(FileType.SNAPSHOT, _id(b)), b)
    two.save(Handle(FileType.CONFIG), b"config two")
    assert list(one.list(FileType.SNAPSHOT)) == [(_id(a), len(a))]
    assert list(two.list(FileType.SNAPSHOT)) == [(_id(b), len(b))]
    assert list(one.list(FileType.CONFIG)) == []
    with pytest.raises(NotFoundError):
        one.load(Handle(FileType.SNAPSHOT, _id(b)))


def test_create_is_idempotent(store: Store) -> None:
    data = b"survives a second create"
    h = Handle(FileType.KEY, _id(data))
    store.save(h, data)
    store.create()
    assert store.load(h) == data


def test_concurrent_saves_from_threads(store: Store) -> None:
    blobs = [os.urandom(1000 + 7919 * i % 200_000) for i in range(48)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(part: list[bytes]) -> None:
        try:
            barrier.wait(timeout=30)
            for b in part:
                store.save(Handle(FileType.PACK, _id(b)), b)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(blobs[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert sorted(store.list(FileType.PACK)) == sorted((_id(b), len(b)) for b in blobs)
    for b in blobs:
        assert store.load(Handle(FileType.PACK, _id(b))) == b
