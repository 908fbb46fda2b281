"""`SnapshotDisk`: an image snapshot as a random-access disk, read through a blob cache with
read-ahead.

The offset-to-blob mapping is the stored image's fixed grid (``sources.stored_image``), the same
one the mount reads through (``mount.content.ImageContent``, ``mount.blobcache.BlobCache``): chunk
``offset // chunk_size``; an all-zero blob is a hole, served without touching the repository and
reported as a hole by block status. A read that reaches chunk ``i`` after chunk ``i - 1`` was
read (a sequential reader: a boot, ``qemu-img convert``, ``nbdcopy``) starts loading the next
chunks in the background, so the repository's latency overlaps the client's next requests.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from ..errors import BlobNotFoundError
from ..mount.blobcache import BlobCache
from ..repo.blob import BlobType
from ..repo.repository import Repository
from ..sources.stored_image import ImageSnapshot
from . import nbdproto as P
from .nbdserver import Piece

DEFAULT_READ_AHEAD = 4
"""Chunks loaded ahead of a sequential reader (16 MiB at the default 4 MiB chunks)."""


class ReadAhead:
    """Loads the chunks after a sequentially read one into the cache, on its own threads."""

    def __init__(self, cache: BlobCache, ids: list[bytes], zero_ids: frozenset[bytes], depth: int) -> None:
        self._cache = cache
        self._ids = ids
        self._zero = zero_ids
        self.depth = depth
        self._recent: deque[int] = deque(maxlen=64)  # several clients (multi-conn) interleave
        self._queued: set[int] = set()
        self._mu = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nbd-readahead") if depth else None

    def touched(self, index: int) -> None:
        if self._pool is None:
            return
        with self._mu:
            sequential = index == 0 or index - 1 in self._recent
            if index not in self._recent:
                self._recent.append(index)
            if not sequential:
                return
            todo = [
                i
                for i in range(index + 1, min(index + 1 + self.depth, len(self._ids)))
                if i not in self._queued and self._ids[i] not in self._zero
            ]
            self._queued.update(todo)
            if len(self._queued) > 4 * self.depth + 64:
                self._queued = set(todo)
        for i in todo:
            self._pool.submit(self._load, i)

    def _load(self, index: int) -> None:
        try:
            self._cache.get(self._ids[index])
        except Exception:
            pass
        finally:
            with self._mu:
                self._queued.discard(index)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class SnapshotDisk:
    """The disk of image snapshot ``image``, read-only. Blobs are located in the index up front,
    so a blob missing from it fails here, before anything is served."""

    writable = False

    def __init__(
        self, repo: Repository, image: ImageSnapshot, cache_bytes: int = 256 << 20, read_ahead: int = DEFAULT_READ_AHEAD
    ) -> None:
        self.image = image
        self.size = image.device_size
        self.chunk_size = image.chunk_size
        self._ids = image.content
        self._zero = image.zero_ids()
        for i, blob_id in enumerate(self._ids):
            if blob_id not in self._zero and repo.index.lookup(BlobType.DATA, blob_id) is None:
                raise BlobNotFoundError(
                    f"data blob {blob_id.hex()} (disk offset {i * self.chunk_size}) of snapshot "
                    f"{image.snapshot.short_id} is in no index: the repository is damaged (run check)"
                )
        # at least read-ahead + the chunks a few clients read at once, so prefetched chunks stay
        cache_bytes = max(cache_bytes, (read_ahead + 4) * self.chunk_size)
        self.cache = BlobCache(lambda blob_id: repo.load_blob(BlobType.DATA, blob_id), cache_bytes)
        self._ahead = ReadAhead(self.cache, self._ids, self._zero, read_ahead)

    def is_hole(self, index: int) -> bool:
        return self._ids[index] in self._zero

    def read(self, offset: int, length: int) -> list[Piece]:
        end = offset + length
        out: list[Piece] = []
        while offset < end:
            i, within = divmod(offset, self.chunk_size)
            n = min(self.chunk_size - within, end - offset)
            blob_id = self._ids[i]
            if blob_id in self._zero:
                if out and out[-1][1] is None:  # one hole for consecutive zero chunks
                    at, _, k = out[-1]
                    out[-1] = (at, None, k + n)
                else:
                    out.append((offset, None, n))
            else:
                self._ahead.touched(i)
                data = self.cache.get(blob_id)
                out.append((offset, memoryview(data)[within : within + n], n))
            offset += n
        return out

    def extents(self, offset: int, length: int) -> list[tuple[int, int]]:
        end = offset + length
        runs: list[tuple[int, int]] = []
        while offset < end:
            i, within = divmod(offset, self.chunk_size)
            n = min(self.chunk_size - within, end - offset)
            state = P.STATE_HOLE | P.STATE_ZERO if self._ids[i] in self._zero else 0
            if runs and runs[-1][1] == state:
                runs[-1] = (runs[-1][0] + n, state)
            else:
                runs.append((n, state))
            offset += n
        return runs

    def write(self, offset: int, data: bytes) -> None:
        raise PermissionError("the snapshot is read-only")

    def write_zeroes(self, offset: int, length: int) -> None:
        raise PermissionError("the snapshot is read-only")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._ahead.close()


__all__ = ["DEFAULT_READ_AHEAD", "ReadAhead", "SnapshotDisk"]
