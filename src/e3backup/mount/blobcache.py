"""An LRU cache of decrypted data blobs, bounded in bytes, for the random reads of a mount.

Reads through FUSE come in 128 KiB pieces at arbitrary offsets; each maps to one blob (a 4 MiB
image chunk, a ~1 MiB file chunk). The cache keeps the last ``max_bytes`` of blobs so sequential
and nearby reads decrypt each blob once. Concurrent misses on the same blob load it once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_CACHE_BYTES = 256 << 20


class BlobCache:
    def __init__(self, load: Callable[[bytes], bytes], max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._load = load
        self.max_bytes = max_bytes
        self._items: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._mu = threading.Lock()
        self._loading: dict[bytes, threading.Event] = {}
        self.hits = self.misses = 0

    def get(self, blob_id: bytes) -> bytes:
        while True:
            with self._mu:
                data = self._items.get(blob_id)
                if data is not None:
                    self._items.move_to_end(blob_id)
                    self.hits += 1
                    return data
                pending = self._loading.get(blob_id)
                if pending is None:
                    pending = self._loading[blob_id] = threading.Event()
                    self.misses += 1
                    break
            pending.wait()  # another thread loads it; then look again
        try:
            data = self._load(blob_id)
            with self._mu:
                self._items[blob_id] = data
                self._size += len(data)
                while self._size > self.max_bytes and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self._size -= len(old)
            return data
        finally:
            with self._mu:
                del self._loading[blob_id]
            pending.set()


__all__ = ["DEFAULT_CACHE_BYTES", "BlobCache"]
