"""Decoding into the caller's buffers (the image restore's zero-copy path) gives the bytes and the
errors of the allocating path: same plaintext, same refusal of a flipped bit or a wrong blob."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest
import zstandard

from e3backup.errors import IntegrityError
from e3backup.formats.direct import ALIGN, address_of, aligned_buffer
from e3backup.repo.blob import BlobType
from e3backup.repo.compression import compress, decompress_into
from e3backup.repo.crypto import Key, MacError
from e3backup.repo.pack import PackedBlob
from e3backup.repo.repository import Repository, check_blob_ids
from e3backup.restore.packs import read_blobs, scratch_buffer, sealed_blobs
from e3backup.store.base import FileType, Handle

TEXT = b"the quick brown fox jumps over the lazy dog\n" * 5000


def test_open_into_matches_open_and_checks_room() -> None:
    key = Key.random()
    data = os.urandom(100_000)
    sealed = key.seal(data)
    out = memoryview(bytearray(len(data) + 15))
    assert bytes(key.open_into(sealed, out)) == key.open(sealed) == data
    assert bytes(key.open_into(key.seal(b""), out)) == b""
    with pytest.raises(ValueError, match="too small"):
        key.open_into(sealed, memoryview(bytearray(len(data))))


def test_open_into_refuses_a_flipped_bit_and_writes_nothing() -> None:
    key = Key.random()
    bad = bytearray(key.seal(b"secret" * 1000))
    bad[40] ^= 1
    out = memoryview(bytearray(7000))
    with pytest.raises(MacError):
        key.open_into(bytes(bad), out)
    assert not any(out)


@pytest.mark.parametrize("data", [TEXT, os.urandom(300_000), b"x"])
def test_decompress_into_round_trip(data: bytes) -> None:
    out = memoryview(bytearray(len(data)))
    decompress_into(compress(data), out)
    assert bytes(out) == data


def test_decompress_into_reads_frames_without_size_and_across_frames() -> None:
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(TEXT)
    for frames in (no_size, compress(TEXT[:1000]) + no_size[:0] + compress(TEXT[1000:])):
        out = memoryview(bytearray(len(TEXT)))
        decompress_into(frames, out)
        assert bytes(out) == TEXT


@pytest.mark.parametrize(
    "room, said",
    [
        (len(TEXT) + 1, f"got {len(TEXT)}, expected {len(TEXT) + 1}"),
        (len(TEXT) - 1, f"got more than {len(TEXT) - 1}, expected {len(TEXT) - 1}"),
    ],
)
def test_decompress_into_length_mismatch_names_both(room: int, said: str) -> None:
    with pytest.raises(IntegrityError, match=said):
        decompress_into(compress(TEXT), memoryview(bytearray(room)))


def test_decompress_into_corrupt_frame_is_an_integrity_error() -> None:
    bad = bytearray(compress(TEXT))
    bad[len(bad) // 2] ^= 0xFF
    bad[5] ^= 0xFF
    with pytest.raises(IntegrityError):
        decompress_into(bytes(bad), memoryview(bytearray(len(TEXT))))


def _pack_with(repo: Repository, blobs: list[tuple[bytes, bool]]) -> tuple[str, list[PackedBlob]]:
    with repo.lock(), repo.writer() as w:
        for data, compressed in blobs:
            w.save(BlobType.DATA, data, compressed=compressed)
    found = [repo.index.lookup(BlobType.DATA, hashlib.sha256(d).digest()) for d, _ in blobs]
    assert all(f is not None for f in found)
    pack_ids = {f.pack_id for f in found if f is not None}
    assert len(pack_ids) == 1
    return pack_ids.pop(), [f.blob for f in found if f is not None]


def test_open_blob_into_gives_read_blobs_bytes_in_aligned_memory(repo: Repository) -> None:
    contents = [(TEXT, True), (os.urandom(200_000), False), (os.urandom(50_000), True), (b"y" * 3, True)]
    pack_id, blobs = _pack_with(repo, contents)
    assert any(b.uncompressed_length for b in blobs) and any(not b.uncompressed_length for b in blobs)
    want = {b: plain for b, plain in read_blobs(repo, pack_id, blobs)}
    got = {}
    checked = []
    for b, sealed in sealed_blobs(repo, pack_id, blobs):
        out = aligned_buffer(len(TEXT) + ALIGN)
        view = repo.open_blob_into(pack_id, b, sealed, out, scratch_buffer(b.length))
        assert address_of(view) % ALIGN == 0
        got[b] = bytes(view)
        checked.append((pack_id, b, view))
    check_blob_ids(checked)
    assert got == want and sorted(want.values()) == sorted(d for d, _ in contents)


def test_scratch_buffers_are_per_thread_and_grow() -> None:
    mine = scratch_buffer(10)
    assert scratch_buffer(10) is mine and len(mine) >= 10 + 15
    assert len(scratch_buffer(3 * ALIGN)) >= 3 * ALIGN + 15
    other: list[memoryview] = []
    t = threading.Thread(target=lambda: other.append(scratch_buffer(10)))
    t.start()
    t.join()
    assert address_of(other[0]) != address_of(scratch_buffer(10))


def test_check_blob_ids_names_the_one_wrong_blob_in_a_full_batch(repo: Repository) -> None:
    contents = [(os.urandom(70_000) + bytes([i]), True) for i in range(20)]
    pack_id, blobs = _pack_with(repo, contents)
    plains = [d for d, _ in contents]
    check_blob_ids([(pack_id, b, p) for b, p in zip(blobs, plains, strict=True)])
    plains[13] = plains[13][:-1] + b"\xff"
    with pytest.raises(IntegrityError, match=f"data blob {blobs[13].id.hex()} in pack {pack_id}: hash mismatch"):
        check_blob_ids([(pack_id, b, p) for b, p in zip(blobs, plains, strict=True)])


def decode_into(
    repo: Repository, pack_id: str, blob: PackedBlob, sealed: bytes, out: memoryview, scratch: memoryview
) -> memoryview:
    """What the image restore does for one blob: open it into ``out``, then check its ID."""
    plain = repo.open_blob_into(pack_id, blob, sealed, out, scratch)
    check_blob_ids([(pack_id, blob, plain)])
    return plain


def test_open_blob_into_refuses_corruption_and_check_blob_ids_the_wrong_blob(repo: Repository) -> None:
    pack_id, (text_blob, rand_blob) = _pack_with(repo, [(TEXT, True), (os.urandom(10_000), False)])
    sealed = bytearray(repo.store.load(Handle(FileType.PACK, pack_id)))
    out, scratch = memoryview(bytearray(len(TEXT) + 64)), memoryview(bytearray(len(TEXT) + 64))
    piece = sealed[text_blob.offset : text_blob.offset + text_blob.length]
    assert bytes(decode_into(repo, pack_id, text_blob, bytes(piece), out, scratch)) == TEXT
    piece[100] ^= 1
    with pytest.raises(IntegrityError, match=f"{text_blob.id.hex()} in pack {pack_id}: ciphertext verification"):
        decode_into(repo, pack_id, text_blob, bytes(piece), out, scratch)
    # the index says blob A lives where blob B's (valid) bytes are: the hash check catches it
    other = sealed[rand_blob.offset : rand_blob.offset + rand_blob.length]
    liar = PackedBlob(BlobType.DATA, text_blob.id, rand_blob.offset, rand_blob.length, 0)
    with pytest.raises(IntegrityError, match="hash mismatch"):
        decode_into(repo, pack_id, liar, bytes(other), out, scratch)
    with pytest.raises(ValueError, match="too small"):
        decode_into(repo, pack_id, text_blob, bytes(piece), memoryview(bytearray(10)), scratch)
