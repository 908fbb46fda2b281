"""Blob IDs checked in batches: every decoded blob is checked exactly once, buffers always come
back, a pool that runs dry checks what waits instead of deadlocking, and cancelling stops a wait."""

from __future__ import annotations

import hashlib
import threading

import pytest

from e3backup.errors import E3Error, IntegrityError
from e3backup.repo.blob import BlobType
from e3backup.repo.pack import PackedBlob
from e3backup.repo.repository import check_blob_ids
from e3backup.restore.hash_batches import HashBatches
from e3backup.restore.image import Decoded

checked: list[list[bytes]] = []


@pytest.fixture(autouse=True)
def _forget_checked() -> None:
    checked.clear()


def spy(batch: list[Decoded]) -> None:
    """The restore's check (``check_blob_ids``), noting the blob IDs of each batch."""
    checked.append([d.blob.id for d in batch])
    check_blob_ids([(d.pack_id, d.blob, d.plain) for d in batch])


def pool(workers: int, lanes: int, cancel: threading.Event | None = None) -> HashBatches[Decoded]:
    return HashBatches(4096, workers, cancel or threading.Event(), spy, lanes=lanes)


def decode(batches: HashBatches[Decoded], n: int, lie: bool = False) -> Decoded:
    """Take a buffer and 'decode' blob ``n`` into it (its ID is the SHA-256 of its bytes)."""
    buffer = batches.take()
    data = f"blob {n} ".encode() * 100
    buffer[: len(data)] = data
    blob_id = hashlib.sha256(b"another" if lie else data).digest()
    return Decoded("pack", PackedBlob(BlobType.DATA, blob_id, 0, len(data) + 32), buffer[: len(data)], buffer)


def run(batches: HashBatches[Decoded], first: int, count: int) -> None:
    for n in range(first, first + count):
        ready = batches.add(decode(batches, n))
        if ready:
            batches.check(ready)
    batches.finish()


def test_one_worker_checks_full_batches_then_the_rest() -> None:
    batches = pool(workers=1, lanes=4)
    run(batches, 0, 18)
    assert [len(b) for b in checked] == [4, 4, 4, 4, 2]
    assert len({i for b in checked for i in b}) == 18
    assert len(batches._free) == 5  # every buffer is back


def test_a_dry_pool_checks_the_waiting_blobs_itself() -> None:
    batches = pool(workers=2, lanes=4)  # 10 buffers
    held = [batches.take() for _ in range(7)]
    for n in range(3):
        assert batches.add(decode(batches, n)) == []  # 10 buffers out, 3 of them waiting
    assert checked == []
    batches.take()  # no buffer free, no check running: the 3 waiting blobs are checked now
    assert [len(b) for b in checked] == [3]
    batches.release(held)


def test_many_workers_check_every_blob_once() -> None:
    batches = pool(workers=6, lanes=16)
    threads = [threading.Thread(target=run, args=(batches, 1000 * t, 150)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for b in checked for i in b]
    assert len(ids) == len(set(ids)) == 900
    assert len(batches._free) == 6 + 32


def test_a_mismatch_names_the_blob_and_returns_the_buffers() -> None:
    batches = pool(workers=1, lanes=4)
    for n in range(3):
        batches.add(decode(batches, n))
    liar = decode(batches, 3, lie=True)
    ready = batches.add(liar)
    with pytest.raises(IntegrityError, match=f"data blob {liar.blob.id.hex()} in pack pack: hash mismatch"):
        batches.check(ready)
    assert len(batches._free) == 5


def test_cancel_ends_a_wait_for_a_buffer() -> None:
    cancel = threading.Event()
    batches = pool(workers=1, lanes=1, cancel=cancel)
    held = [batches.take(), batches.take()]  # the whole pool, nothing waiting to be checked
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            batches.take()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=wait)
    t.start()
    cancel.set()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], E3Error) and "cancelled" in str(errors[0])
    assert len(held) == 2


def test_a_buffer_whose_filling_fails_goes_back_to_the_pool() -> None:
    batches = pool(workers=1, lanes=4)
    buffer = batches.take()
    with pytest.raises(OSError, match="read error"), batches.back_on_error(buffer):
        raise OSError(5, "read error")
    assert len(batches._free) == 5
    with batches.back_on_error(batches.take()):
        pass  # filled: the buffer stays with its taker
    assert len(batches._free) == 4
