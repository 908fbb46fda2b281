"""Read, chunk and save files (the reader threads' side of a files backup).

``FileSaver.leaves`` runs in ``read_workers`` threads on batches of directory entries: it stats
each one, recognises files the parent snapshot has unchanged, and reads the others into
FastCDC chunks. Small chunks are compressed and encrypted in the reader thread; big ones go to
``save_workers`` threads, with a bounded number in flight (which bounds memory). Hard links
are read once, by the first name's job.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from fastcdc import fastcdc as cdc_chunks

from ...platform.compat import O_NOFOLLOW, O_NONBLOCK, READ_FLAGS, readinto
from ...repo.blob import BlobType
from ...repo.node import Node
from .metadata import node_from_stat
from .options import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK
from .parent import Raw, reusable_content
from .sizing import WINDOW
from .state import BackupState, Tally

_INLINE_SAVE = 256 * 1024
_O_NOATIME = getattr(os, "O_NOATIME", 0)
# O_NONBLOCK: a file replaced by a FIFO after the listing must not block the open
_OPEN = READ_FLAGS | O_NOFOLLOW | O_NONBLOCK

# one reader job: (name, path, parent entry, listed as a regular file)
Job = tuple[bytes, bytes, Raw | None, bool]
# what a reader returns per file: a new node, the parent's entry reused as is, or nothing
Leaf = Node | Raw | None


class FileSaver:
    def __init__(self, state: BackupState, savers: ThreadPoolExecutor, inflight: int, window: int = WINDOW) -> None:
        """``inflight`` chunks at most wait for the savers; big files are chunked through
        ``window`` bytes (both from ``sizing``)."""
        self.state = state
        self.savers = savers
        self.window = window
        self._hardlinks: dict[tuple[int, int], Future[Node | None]] = {}
        self._inflight = threading.BoundedSemaphore(inflight)

    def leaves(self, batch: list[Job]) -> list[Leaf]:
        t = Tally()
        try:
            return [self.leaf(name, path, praw, is_file, t) for name, path, praw, is_file in batch]
        finally:
            self.state.add(t)

    def leaf(self, name: bytes, path: bytes, praw: Raw | None, is_file: bool, t: Tally) -> Leaf:
        state = self.state
        if state.failure is not None:
            return None
        with_atime = state.opts.with_atime
        meta = state.opts.windows_meta
        fd = -1
        st: os.stat_result | None = None
        if is_file and praw is None:
            # a new regular file: open it first and fstat, one syscall fewer than lstat + open
            try:
                fd = _open(path)
                st = os.fstat(fd)
            except OSError:
                st = None  # the lstat below sees what it became and reports errors
            if st is not None and not stat.S_ISREG(st.st_mode):
                st = None
        try:
            if st is None:
                if fd >= 0:
                    os.close(fd)
                    fd = -1
                st = os.lstat(path)
            content = None if praw is None else reusable_content(praw, st, state.repo.index)
            if content is not None:
                assert praw is not None
                t.unmodified_file(st.st_size)
                if praw.get("device_id", 0) == st.st_dev and not with_atime and meta is None:
                    return praw  # the whole entry, without reading xattrs or names again
                node = node_from_stat(name, path, st, with_atime, windows_meta=meta)  # ACLs change alone
                node.content = content
                return node
            node = node_from_stat(name, path, st, with_atime, fd, meta)
            if node.type == "socket":
                return None  # restic skips sockets; they cannot be restored meaningfully
            if node.type == "dir":
                # it became a directory after the listing: store it empty rather than racing it
                node.subtree = state.empty_tree()
                return node
            if node.type != "file":
                t.files += 1
                return node
            return self._file(path, node, praw is None, fd, t)
        except OSError as e:
            state.error(path, e)
            return None
        finally:
            if fd >= 0:
                os.close(fd)

    def _file(self, path: bytes, node: Node, is_new: bool, fd: int, t: Tally) -> Node | None:
        if node.links <= 1:
            return self._read_file(path, node, is_new, fd, t)
        # a hard link: the first name's job reads the inode, the others share its content
        key = (node.device_id, node.inode)
        mine: Future[Node | None] = Future()
        with self.state.mu:
            first = self._hardlinks.get(key)
            if first is None:
                self._hardlinks[key] = mine
        if first is not None:
            done = first.result()  # registered when that job started, so it is running: no deadlock
            if done is None:
                return None
            node.content, node.size = done.content, done.size
            t.shown += node.size
            t.file(node.size, 0, is_new)
            return node
        try:
            result = self._read_file(path, node, is_new, fd, t)
        except BaseException as e:
            mine.set_exception(e)
            raise
        mine.set_result(result)
        return result

    def _read_file(self, path: bytes, node: Node, is_new: bool, fd: int, t: Tally) -> Node | None:
        """Read, chunk and save a file; ``fd`` is the file already open (from ``fstat``) or -1."""
        state = self.state
        if state.failure is not None:
            return None
        state.check()  # cancelled: the error reaches the walk through the future
        own = fd < 0
        if own:
            try:
                fd = _open(path)
            except OSError as e:
                state.error(path, e)
                return None
        try:
            if own:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    state.error(path, OSError(0, "not a regular file any more"))
                    return None
                size = st.st_size
            else:
                size = node.size
            if size > MIN_CHUNK:
                state.progress.add(current=os.fsdecode(path))  # small files pass too fast to show
                content, size = self._chunk_fd(fd)
            elif size:
                data = _read_all(fd, size)
                content = [self.save_chunk(data, t)] if data else []
                size = len(data)
                t.shown += size
            else:
                content = []
        except OSError as e:
            state.error(path, e)
            return None
        finally:
            if own:
                os.close(fd)
        node.content = content
        node.size = size
        t.file(size, size, is_new)
        return node

    def _chunk_fd(self, fd: int) -> tuple[list[bytes], int]:
        """A big file's chunks, saved as they are cut; progress is shown per chunk."""
        content = []
        total = 0
        state = self.state
        for data in stream_chunks(fd, self.window):
            state.check()
            n = len(data)
            content.append(self.save_chunk(data, None))
            state.progress.add(nbytes=n)
            total += n
        return content, total

    def save_chunk(self, data: bytes, t: Tally | None) -> bytes:
        state = self.state
        blob_id = hashlib.sha256(data).digest()
        writer = state.writer
        if len(data) < _INLINE_SAVE:
            # a small chunk costs less to compress here than to hand to a saver thread;
            # ``save`` skips it if it is known
            state.check()
            if writer.save(BlobType.DATA, data, blob_id)[1]:
                if t is not None:
                    t.blobs += 1
                else:
                    with state.mu:
                        state.data_blobs += 1
            return blob_id
        if writer.is_known(BlobType.DATA, blob_id):
            return blob_id
        state.check()
        self._inflight.acquire()
        try:
            fut = self.savers.submit(writer.save, BlobType.DATA, data, blob_id)
        except BaseException:
            self._inflight.release()
            raise
        fut.add_done_callback(self._saved)
        return blob_id

    def _saved(self, fut: Future[tuple[bytes, bool]]) -> None:
        self._inflight.release()
        if fut.cancelled():
            return
        e = fut.exception()
        if e is not None:
            self.state.fail(e)
        elif fut.result()[1]:
            with self.state.mu:
                self.state.data_blobs += 1


_windows = threading.local()  # each thread's free window buffers


def stream_chunks(fd: int, window_size: int = WINDOW) -> Iterator[bytes]:
    """FastCDC chunks of a file, read through a bounded window (no mmap: RSS stays flat).

    Every chunk but the window's last is cut before the window's end, so the cut points equal
    those of chunking the whole file at once; the last one is carried over to the next window
    (it is at most ``MAX_CHUNK``, so each window yields at least two chunks). The window is a
    buffer kept per thread and read into: a fresh 16-24 MiB buffer per window cost page faults
    and a copy of everything read, under the GIL.
    """
    if window_size <= MAX_CHUNK:
        raise ValueError(f"a chunking window of {window_size} bytes cannot hold the largest chunk")
    free: list[bytearray] = [b for b in _windows.__dict__.setdefault("free", []) if len(b) == window_size]
    _windows.free = free  # a window of another size (another run's budget) is let go
    buf = free.pop() if free else bytearray(window_size)
    view = memoryview(buf)
    try:
        kept = 0  # bytes carried over to the front of the window
        eof = False
        while not eof:
            n = kept
            while n < window_size:
                got = readinto(fd, view[n:])
                if not got:
                    eof = True
                    break
                n += got
            window = view[:n]
            chunks = list(cdc_chunks(window, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK))
            if not eof:
                chunks.pop()  # it may be cut short by the window's end
            end = 0
            for ch in chunks:
                end = ch.offset + ch.length
                yield bytes(window[ch.offset : end])
            if not eof:
                tail = bytes(window[end:n])
                kept = len(tail)
                buf[:kept] = tail
    finally:
        free.append(buf)


def _open(path: bytes) -> int:
    try:
        return os.open(path, _OPEN | _O_NOATIME)
    except PermissionError:
        return os.open(path, _OPEN)  # O_NOATIME needs the file's owner


def _read_all(fd: int, size: int) -> bytes:
    parts = []
    left = size
    while left > 0:
        b = os.read(fd, left)
        if not b:
            break
        parts.append(b)
        left -= len(b)
    return b"".join(parts)


__all__ = ["FileSaver", "Job", "Leaf", "cdc_chunks", "stream_chunks"]
