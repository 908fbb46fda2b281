"""Packs assembled in temporary files instead of memory (prune's repack).

``PackFileWriter`` has ``PackWriter``'s interface, but each sealed blob goes to an anonymous
temporary file (in ``$TMPDIR``, as restic's packer uses) as it arrives, so a pack being filled,
one waiting and one uploading cost page cache rather than three pack sizes of process memory.
``finish`` copies the blobs in random order (spec 10.5) into a second temporary file, hashing
them on the way, appends the header and parses it back, as ``PackWriter.finish`` does; the store
then streams that file (``Store.save_file``).
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, cast

from ..errors import RepoError
from ..platform.compat import pread
from .blob import BlobType
from .crypto import Key
from .pack import PackedBlob, check_tail, pack_tail

_PIECE = 256 * 1024


def _temporary_file(tmp_dir: str | None) -> BinaryIO:
    """An anonymous file: the kernel deletes it when it is closed or the process dies."""
    return cast(BinaryIO, tempfile.TemporaryFile(dir=tmp_dir))  # a wrapper object on Windows


@contextmanager
def _tmp_errors(tmp_dir: str | None) -> Iterator[None]:
    """A full or unwritable temporary directory is named, with the way out."""
    try:
        yield
    except OSError as e:
        where = tmp_dir or tempfile.gettempdir()
        raise RepoError(f"temporary pack file in {where}: {e.strerror or e} (TMPDIR chooses the directory)") from e


class PackFileWriter:
    """Collects sealed blobs of one type into one pack held in a temporary file."""

    def __init__(self, key: Key, blob_type: BlobType, tmp_dir: str | None = None) -> None:
        self.key = key
        self.blob_type = blob_type
        self._tmp_dir = tmp_dir
        with _tmp_errors(tmp_dir):
            self._spill = _temporary_file(tmp_dir)
        self._blobs: list[PackedBlob] = []  # offsets are positions in the spill file
        self._size = 0

    @property
    def size(self) -> int:
        """Bytes of blobs written so far (the header is added by ``finish``)."""
        return self._size

    @property
    def count(self) -> int:
        return len(self._blobs)

    def add_sealed(self, blob_id: bytes, sealed: bytes | memoryview, uncompressed_length: int) -> None:
        """Append an already sealed blob; ``uncompressed_length`` 0 means not compressed."""
        with _tmp_errors(self._tmp_dir):
            self._spill.write(sealed)
        self._blobs.append(PackedBlob(self.blob_type, blob_id, self._size, len(sealed), uncompressed_length))
        self._size += len(sealed)

    def finish(self, shuffle: bool = True) -> tuple[str, BinaryIO, list[PackedBlob]]:
        """Return ``(pack_id, pack_file, blobs)``; the caller closes the file (which deletes it).

        Blobs are copied in pieces of ``_PIECE`` bytes, so memory stays small whatever their size.
        """
        order = list(self._blobs)
        if shuffle:
            random.shuffle(order)
        with _tmp_errors(self._tmp_dir):
            try:
                return self._copy(order)
            finally:
                self._spill.close()

    def _copy(self, order: list[PackedBlob]) -> tuple[str, BinaryIO, list[PackedBlob]]:
        self._spill.flush()
        spill = self._spill.fileno()
        out = _temporary_file(self._tmp_dir)
        try:
            digest = hashlib.sha256()
            blobs = []
            offset = 0
            for b in order:
                end = b.offset + b.length
                for start in range(b.offset, end, _PIECE):
                    piece = pread(spill, min(_PIECE, end - start), start)
                    if len(piece) != min(_PIECE, end - start):
                        raise RepoError(f"temporary pack file ends inside blob {b.id.hex()}")
                    digest.update(piece)
                    out.write(piece)
                blobs.append(PackedBlob(b.type, b.id, offset, b.length, b.uncompressed_length))
                offset += b.length
            tail = pack_tail(self.key, blobs)
            digest.update(tail)
            out.write(tail)
            out.flush()
            pack_id = digest.hexdigest()
            check_tail(self.key, tail, offset + len(tail), pack_id, blobs)
        except BaseException:
            out.close()
            raise
        self._blobs = blobs
        return pack_id, out, blobs

    def close(self) -> None:
        """Drop the blobs (a cancelled writer); ``finish`` closes the spill file itself."""
        self._spill.close()


__all__ = ["PackFileWriter"]
