"""Reading blobs for a restore the way packs are laid out: each pack range fetched once.

A restore knows every blob it needs before it reads any. Grouped by pack and sorted by offset,
neighbouring blobs (gaps up to 256 KiB, ranges up to 32 MiB) are fetched with one ranged read,
and each blob is decrypted once however many places it goes to. Used by the file restore and
the image restore (which decodes into its own buffers and checks blob IDs in batches,
``hash_batches``); the image mount's blob cache reads single blobs the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from ..errors import E3Error, IntegrityError, NotFoundError
from ..formats.direct import ALIGN, aligned_buffer
from ..repo.pack import PackedBlob
from ..repo.repository import Repository
from ..store.base import FileType, Handle

MAX_GAP = 256 * 1024
MAX_RANGE = 32 * 1024 * 1024  # measured on S3: one GET per pack part, 10 % faster than 8 MiB ranges


def pack_ranges(blobs: list[PackedBlob], max_range: int = MAX_RANGE) -> Iterator[tuple[int, int, list[PackedBlob]]]:
    """Group blobs sorted by offset into ``(start, end, blobs)`` byte ranges read with one request
    each (a range passes ``max_range`` only to hold a single larger blob)."""
    group: list[PackedBlob] = []
    start = end = 0
    for b in blobs:
        if group and (b.offset - end > MAX_GAP or b.offset + b.length - start > max_range):
            yield start, end, group
            group = []
        if not group:
            start = b.offset
        group.append(b)
        end = max(end, b.offset + b.length)
    if group:
        yield start, end, group


def read_pack_range(repo: Repository, pack_id: str, start: int, end: int) -> memoryview:
    """Bytes [start, end) of a pack; a missing or short pack is an ``IntegrityError`` naming it."""
    try:
        data = repo.store.load_view(Handle(FileType.PACK, pack_id), start, end - start)
    except NotFoundError as e:
        raise IntegrityError(f"pack {pack_id} is missing from the repository (needed for this restore)") from e
    if len(data) != end - start:
        raise IntegrityError(f"pack {pack_id}: truncated (short read at offset {start})")
    return memoryview(data)


def sealed_blobs(
    repo: Repository, pack_id: str, blobs: list[PackedBlob], max_range: int = MAX_RANGE
) -> Iterator[tuple[PackedBlob, memoryview]]:
    """Each blob of one pack still sealed (encrypted), reading every needed range of the pack once."""
    for start, end, group in pack_ranges(sorted(set(blobs), key=lambda b: b.offset), max_range):
        view = read_pack_range(repo, pack_id, start, end)
        for b in group:
            yield b, view[b.offset - start : b.offset - start + b.length]


def read_blobs(
    repo: Repository,
    pack_id: str,
    blobs: list[PackedBlob],
    on_error: Callable[[PackedBlob, E3Error], None] | None = None,
    max_range: int = MAX_RANGE,
) -> Iterator[tuple[PackedBlob, bytes]]:
    """Each blob of one pack, decrypted and verified, reading every needed range of the pack once.

    Without ``on_error`` the first blob that cannot be read raises; with it, each such blob (a
    corrupt one, or every blob of a missing or truncated range) is passed to ``on_error`` and
    skipped, and the others still come."""
    if on_error is None:
        for b, sealed in sealed_blobs(repo, pack_id, blobs, max_range):
            yield b, repo.decode_blob(pack_id, b, sealed)
        return
    for start, end, group in pack_ranges(sorted(set(blobs), key=lambda b: b.offset), max_range):
        try:
            view = read_pack_range(repo, pack_id, start, end)
        except E3Error as e:
            for b in group:
                on_error(b, e)
            continue
        for b in group:
            try:
                plain = repo.decode_blob(pack_id, b, view[b.offset - start : b.offset - start + b.length])
            except E3Error as e:
                on_error(b, e)
                continue
            yield b, plain


class _Scratch(threading.local):
    """A thread's page-aligned buffer for compressed plaintext (``Repository.open_blob_into``),
    grown to the largest blob seen."""

    view: memoryview | None = None


_scratch = _Scratch()


def scratch_buffer(size: int) -> memoryview:
    """The calling thread's scratch buffer, at least ``size`` + 15 bytes (the AES binding writes
    up to 15 bytes past the end), valid until the thread's next call."""
    if _scratch.view is None or len(_scratch.view) < size + ALIGN:
        _scratch.view = aligned_buffer(size + ALIGN)  # + ALIGN keeps it page-sized
    return _scratch.view


__all__ = ["MAX_GAP", "MAX_RANGE", "pack_ranges", "read_blobs", "read_pack_range", "scratch_buffer", "sealed_blobs"]
