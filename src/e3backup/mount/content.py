"""Random-access readers over a blob list: what a mounted file's ``read`` turns into.

- ``FileContent``: a file node's content; blob sizes vary (content-defined chunks), so the start
  offset of every blob is computed once per open file and a read bisects into it.
- ``ImageContent``: a disk image's fixed grid; offset // chunk size is the chunk, and all-zero
  chunks are served from memory without touching the repository.
- ``Window``: a byte range of another reader (a partition of a disk image).
"""

from __future__ import annotations

import bisect
from typing import Protocol

from ..errors import BlobNotFoundError, IntegrityError
from ..repo.blob import BlobType
from ..repo.master_index import MasterIndex
from .blobcache import BlobCache


class Content(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes: ...


class FileContent:
    def __init__(self, blob_ids: list[bytes], size: int, index: MasterIndex, cache: BlobCache) -> None:
        self.size = size
        self._ids = blob_ids
        self._cache = cache
        self._starts: list[int] = []
        pos = 0
        for blob_id in blob_ids:
            loc = index.lookup(BlobType.DATA, blob_id)
            if loc is None:
                raise BlobNotFoundError(f"data blob {blob_id.hex()} not found in index")
            self._starts.append(pos)
            pos += loc.blob.plaintext_length
        self._end = pos

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size, self._end)
        if offset >= end:
            return b""
        out = bytearray()
        i = bisect.bisect_right(self._starts, offset) - 1
        while offset < end:
            data = self._cache.get(self._ids[i])
            within = offset - self._starts[i]
            piece = data[within : within + end - offset]
            if not piece:
                raise IntegrityError(f"blob {self._ids[i].hex()} is shorter than the index says")
            out += piece
            offset += len(piece)
            i += 1
        return bytes(out)


class ImageContent:
    def __init__(
        self, blob_ids: list[bytes], size: int, chunk_size: int, zero_ids: frozenset[bytes], cache: BlobCache
    ) -> None:
        self.size = size
        self._ids = blob_ids
        self._chunk = chunk_size
        self._zero_ids = zero_ids
        self._cache = cache

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        out = bytearray()
        while offset < end:
            i, within = divmod(offset, self._chunk)
            n = min(self._chunk - within, end - offset)
            blob_id = self._ids[i]
            if blob_id in self._zero_ids:
                out += bytes(n)
            else:
                out += self._cache.get(blob_id)[within : within + n]
            offset += n
        return bytes(out)


class Window:
    def __init__(self, inner: Content, start: int, size: int) -> None:
        self.size = max(0, min(size, inner.size - start))
        self._inner = inner
        self._start = start

    def read(self, offset: int, length: int) -> bytes:
        length = min(length, self.size - offset)
        if length <= 0:
            return b""
        return self._inner.read(self._start + offset, length)


__all__ = ["Content", "FileContent", "ImageContent", "Window"]
