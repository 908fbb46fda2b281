"""The files engine: walk directory trees and store them as a snapshot.

The main thread walks the targets depth first and builds one tree per directory. Files go to
``read_workers`` threads that read, chunk (FastCDC), hash and hand new chunks to
``save_workers`` threads (zstd + AES in ``BlobWriter.save``); the number of chunks in flight is
bounded, which bounds memory. Directories are finished in post-order from a bounded queue, so
walking, reading, compressing and uploading overlap, and memory does not grow with the tree.
A file whose size, mtime, ctime and inode match the parent snapshot is not read again.
A set ``cancel`` event stops the walk and the file reads within a chunk: ``BackupCancelled``,
no snapshot saved.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from fastcdc import fastcdc as cdc_chunks

from ... import __version__
from ...errors import E3Error
from ...progress import Progress
from ...repo.blob import BlobType
from ...repo.names import unquote
from ...repo.node import Node
from ...repo.repository import Repository
from ...repo.snapshot import Snapshot
from ...repo.timefmt import format_ns, now_ns
from ...repo.tree import encode_tree
from ...repo.writer import BlobWriter
from ...tuning import fewer_collections
from .metadata import node_from_stat
from .options import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK, BackupOptions
from .parent import ParentTree, Raw, load_parent, reusable_content, subtree_of, to_node
from .result import BackupResult
from .targets import VirtualDir, build

_MAX_PENDING_DIRS = 512
_LEAF_BATCH = 32
_INLINE_SAVE = 256 * 1024
_O_NOATIME = getattr(os, "O_NOATIME", 0)
# O_NONBLOCK: a file replaced by a FIFO after the listing must not block the open
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK

# one reader job: (name, path, parent entry, listed as a regular file)
_Job = tuple[bytes, bytes, Raw | None, bool]
# what a reader returns per file: a new node, the parent's entry reused as is, or nothing
_Leaf = Node | Raw | None


@dataclass
class _Dir:
    node: Node | None  # None for the snapshot root
    parent: ParentTree | None
    where: bytes | VirtualDir  # children's path prefix (a real directory) or the virtual directory
    children: list[Node | Raw | Future[list[_Leaf]] | _Dir] = field(default_factory=list)
    tree_id: bytes | None = None
    _done_upto: int = 0  # children before this index are known to be finished

    def ready(self) -> bool:
        children = self.children
        i = self._done_upto
        while i < len(children):
            c = children[i]
            if isinstance(c, Future):
                if not c.done():
                    break
            elif isinstance(c, _Dir) and c.tree_id is None:
                break
            i += 1
        self._done_upto = i
        return i == len(children)

    def child_path(self, name: bytes) -> bytes:
        if isinstance(self.where, VirtualDir):
            p = self.where.children[name]
            assert isinstance(p, bytes)
            return p
        return self.where + name


class _Tally:
    """Counters of one batch of files, added to the shared ones (one lock each) per batch."""

    __slots__ = ("blobs", "changed", "files", "nbytes", "new", "read", "shown", "unmodified")

    def __init__(self) -> None:
        self.files = self.nbytes = self.shown = self.read = 0
        self.new = self.changed = self.unmodified = self.blobs = 0

    def unmodified_file(self, size: int) -> None:
        self.files += 1
        self.nbytes += size
        self.shown += size
        self.unmodified += 1

    def file(self, size: int, read: int, is_new: bool) -> None:
        self.files += 1
        self.nbytes += size
        self.read += read
        if is_new:
            self.new += 1
        else:
            self.changed += 1


class BackupCancelled(E3Error):
    """The backup was cancelled; no snapshot was saved."""

    exit_code = 130


class Archiver:
    def __init__(
        self,
        repo: Repository,
        opts: BackupOptions,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.repo = repo
        self.opts = opts
        self.progress = progress or Progress(mode="quiet")
        self.cancel = cancel or threading.Event()
        self.result = BackupResult()
        self._mu = threading.Lock()
        self._pending: deque[_Dir] = deque()
        self._hardlinks: dict[tuple[int, int], Future[Node | None]] = {}
        self._inflight = threading.BoundedSemaphore(2 * opts.save_workers + 2)
        self._failure: BaseException | None = None
        self._writer: BlobWriter | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._savers: ThreadPoolExecutor | None = None
        self._data_blobs = 0

    # -- entry point ----------------------------------------------------------------------------

    def run(self) -> BackupResult:
        start = time.monotonic()
        snap_time = self.opts.time_ns or now_ns()
        targets = [os.fsencode(p) for p in self.opts.paths]
        for t in targets:
            try:
                os.lstat(t)
            except OSError as e:
                raise E3Error(f"cannot back up {os.fsdecode(t)}: {e.strerror}") from e
        root = build(targets)
        abs_paths = [os.path.abspath(p) for p in self.opts.paths]
        host = self.opts.host or socket.gethostname()
        parent = self._find_parent(host, abs_paths)
        if parent is not None:
            self.result.parent_id = parent.id
        if self.progress.mode != "quiet" or self.progress.callback is not None:
            # totals for the percentage and ETA; nobody would see them otherwise
            scanner = threading.Thread(target=self._scan, args=(targets,), name="scanner", daemon=True)
            scanner.start()
        writer = self._writer = self.repo.writer(connections=self.opts.upload_connections)
        self._readers = ThreadPoolExecutor(self.opts.read_workers, thread_name_prefix="reader")
        self._savers = ThreadPoolExecutor(self.opts.save_workers, thread_name_prefix="saver")
        ok = False
        try:
            top = self._walk_virtual(root, None, parent.tree if parent else None)
            self._drain(everything=True)
            self._readers.shutdown(wait=True)
            self._savers.shutdown(wait=True)
            self._check_failure()
            assert top.tree_id is not None
            writer.flush()
            ok = True
        finally:
            self._readers.shutdown(wait=True, cancel_futures=True)
            self._savers.shutdown(wait=True, cancel_futures=True)
            writer.close(success=ok)
        st = writer.stats
        self.result.data_blobs = self._data_blobs
        self.result.tree_blobs = st.blobs_added - self._data_blobs
        self.result.bytes_added = st.bytes_added
        self.result.bytes_stored = st.bytes_stored
        snap = Snapshot(
            time=snap_time,
            tree=top.tree_id,
            paths=abs_paths,
            hostname=host,
            username=_username(),
            uid=os.getuid(),
            gid=os.getgid(),
            excludes=list(self.opts.excluder.patterns),
            tags=list(self.opts.tags),
            parent=parent.id if parent else "",
            program_version=f"e3backup {__version__}",
        )
        self.result.duration = time.monotonic() - start
        snap.summary = {
            "backup_start": format_ns(snap_time),
            "backup_end": format_ns(now_ns()),
            **{
                k: getattr(self.result, k)
                for k in (
                    "files_new",
                    "files_changed",
                    "files_unmodified",
                    "dirs_new",
                    "dirs_changed",
                    "dirs_unmodified",
                    "data_blobs",
                    "tree_blobs",
                )
            },
            "data_added": self.result.bytes_added,
            "data_added_packed": self.result.bytes_stored,
            "total_files_processed": self.result.total_files_processed,
            "total_bytes_processed": self.result.total_bytes_processed,
        }
        self.result.snapshot_id = self.repo.save_snapshot(snap)
        return self.result

    def _find_parent(self, host: str, paths: list[str]) -> Snapshot | None:
        if self.opts.force_full:
            return None
        if self.opts.parent:
            return self.repo.find_snapshot(self.opts.parent)
        want = sorted(paths)
        candidates = [s for s in self.repo.snapshots() if s.hostname == host and sorted(s.paths) == want]
        return candidates[-1] if candidates else None

    # -- walking --------------------------------------------------------------------------------

    def _load_parent(self, tree_id: bytes | None) -> ParentTree | None:
        return None if tree_id is None else load_parent(self.repo, tree_id)

    def _walk_virtual(self, vd: VirtualDir, node: Node | None, parent_subtree: bytes | None) -> _Dir:
        if vd.contents_of is not None:
            st = os.lstat(vd.contents_of)
            return self._walk_dir(vd.contents_of, None, parent_subtree, st.st_dev)
        parent = self._load_parent(parent_subtree)
        d = _Dir(node, parent, vd)
        entries = parent.entries if parent is not None else {}
        for name, child in sorted(vd.children.items()):
            praw = entries.get(name)
            if isinstance(child, VirtualDir):
                assert child.fs_path is not None
                st = os.lstat(child.fs_path)
                cnode = node_from_stat(name, child.fs_path, st, self.opts.with_atime)
                d.children.append(self._walk_virtual(child, cnode, subtree_of(praw)))
            else:
                entry = self._entry(name, child, None, praw)
                if entry is not None:
                    d.children.append(entry)
        self._push(d)
        return d

    def _entry(
        self, name: bytes, path: bytes, dev: int | None, praw: Raw | None
    ) -> Node | Future[list[_Leaf]] | _Dir | None:
        """A backup target (or any entry the main thread must stat itself)."""
        try:
            st = os.lstat(path)
        except OSError as e:
            self._error(path, e)
            return None
        if stat.S_ISDIR(st.st_mode):
            return self._dir_entry(name, path, st, dev, praw)
        assert self._readers is not None
        return self._readers.submit(self._leaves, [(name, path, praw, False)])

    def _dir_entry(
        self, name: bytes, path: bytes, st: os.stat_result, dev: int | None, praw: Raw | None
    ) -> Node | _Dir | None:
        try:
            node = node_from_stat(name, path, st, self.opts.with_atime)
        except OSError as e:
            self._error(path, e)
            return None
        if self.opts.one_file_system and dev is not None and st.st_dev != dev:
            node.subtree = self._empty_tree()  # a mount point: kept, but not crossed
            return node
        return self._walk_dir(path, node, subtree_of(praw), st.st_dev if dev is None else dev)

    def _walk_dir(self, path: bytes, node: Node | None, parent_subtree: bytes | None, dev: int) -> _Dir:
        """List a directory; sub-directories are walked here, files the parent has unchanged are
        recognised here, everything else goes to the readers (their stat, xattrs and reads then
        run in parallel, away from the walking thread)."""
        self._check_failure()
        base = path if path.endswith(b"/") else path + b"/"
        parent = self._load_parent(parent_subtree)
        d = _Dir(node, parent, base)
        try:
            with os.scandir(path) as it:
                # d_type: no stat here; a regular file is opened by its reader without an lstat
                entries = sorted(
                    (e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)) for e in it
                )
        except OSError as e:
            self._error(path, e)
            entries = []
        excluder = self.opts.excluder or None
        readers = self._readers
        assert readers is not None
        known: dict[bytes, Raw] = parent.entries if parent is not None else {}
        get = known.get
        reuse = not self.opts.with_atime
        index = self.repo.index
        t = _Tally()
        children = d.children
        batch: list[_Job] = []
        for name, is_dir, is_file in entries:
            child_path = base + name
            if excluder is not None and excluder.excluded(os.fsdecode(os.path.abspath(child_path))):
                continue
            praw = get(name)
            if is_dir:
                entry = self._entry(name, child_path, dev, praw)
                if entry is not None:
                    children.append(entry)
                continue
            if praw is not None and is_file and reuse:
                # an unchanged file is recognised here: an lstat and a few compares cost less
                # than handing it to a reader (and taking turns with it for the GIL)
                try:
                    st = os.lstat(child_path)
                except OSError:
                    st = None  # its reader reports it
                if st is not None and praw.get("device_id", 0) == st.st_dev:
                    content = reusable_content(praw, st, index)
                    if content is not None:
                        t.unmodified_file(st.st_size)
                        children.append(praw)
                        continue
            # files go to the readers in batches: one job per file costs more than a small file
            batch.append((name, child_path, praw, is_file))
            if len(batch) == _LEAF_BATCH:
                children.append(readers.submit(self._leaves, batch))
                batch = []
        if batch:
            children.append(readers.submit(self._leaves, batch))
        if t.files:
            self._add(t)
        self._push(d)
        return d

    # -- leaves (run in the reader threads) --------------------------------------------------------

    def _leaves(self, batch: list[_Job]) -> list[_Leaf]:
        t = _Tally()
        try:
            return [self._leaf(name, path, praw, is_file, t) for name, path, praw, is_file in batch]
        finally:
            self._add(t)

    def _add(self, t: _Tally) -> None:
        if t.files or t.shown:
            self.progress.add(files=t.files, nbytes=t.shown)
        with self._mu:
            r = self.result
            r.files_new += t.new
            r.files_changed += t.changed
            r.files_unmodified += t.unmodified
            r.total_files_processed += t.files
            r.total_bytes_processed += t.nbytes
            r.bytes_read += t.read
            self._data_blobs += t.blobs

    def _leaf(self, name: bytes, path: bytes, praw: Raw | None, is_file: bool, t: _Tally) -> _Leaf:
        if self._failure is not None:
            return None
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
            content = None if praw is None else reusable_content(praw, st, self.repo.index)
            if content is not None:
                assert praw is not None
                t.unmodified_file(st.st_size)
                if praw.get("device_id", 0) == st.st_dev and not self.opts.with_atime:
                    return praw  # the whole entry, without reading xattrs or names again
                node = node_from_stat(name, path, st, self.opts.with_atime)
                node.content = content
                return node
            node = node_from_stat(name, path, st, self.opts.with_atime, fd)
            if node.type == "socket":
                return None  # restic skips sockets; they cannot be restored meaningfully
            if node.type == "dir":
                # it became a directory after the listing: store it empty rather than racing it
                node.subtree = self._empty_tree()
                return node
            if node.type != "file":
                t.files += 1
                return node
            return self._file(path, node, praw is None, fd, t)
        except OSError as e:
            self._error(path, e)
            return None
        finally:
            if fd >= 0:
                os.close(fd)

    def _file(self, path: bytes, node: Node, is_new: bool, fd: int, t: _Tally) -> Node | None:
        if node.links <= 1:
            return self._read_file(path, node, is_new, fd, t)
        # a hard link: the first name's job reads the inode, the others share its content
        key = (node.device_id, node.inode)
        mine: Future[Node | None] = Future()
        with self._mu:
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

    _empty_tree_id: bytes | None = None

    def _empty_tree(self) -> bytes:
        if self._empty_tree_id is None:
            assert self._writer is not None
            self._empty_tree_id, _ = self._writer.save(BlobType.TREE, encode_tree([]))
        return self._empty_tree_id

    # -- directories ----------------------------------------------------------------------------

    def _push(self, d: _Dir) -> None:
        self._pending.append(d)
        self._drain()

    def _drain(self, everything: bool = False) -> None:
        while self._pending:
            head = self._pending[0]
            if not (everything or len(self._pending) > _MAX_PENDING_DIRS or head.ready()):
                return
            self._pending.popleft()
            self._finish_dir(head)

    def _finish_dir(self, d: _Dir) -> None:
        items: list[Node | Raw] = []
        for c in d.children:
            if isinstance(c, Future):
                items.extend(x for x in c.result() if x is not None)
            elif isinstance(c, _Dir):
                assert c.node is not None and c.tree_id is not None
                c.node.subtree = c.tree_id
                items.append(c.node)
            else:
                items.append(c)
        self._check_failure()
        assert self._writer is not None
        p = d.parent
        if p is not None and len(items) == p.count and all(isinstance(x, dict) or p.same_node(x) for x in items):
            d.tree_id = p.tree_id  # unchanged: the parent's tree, not encoded again
        else:
            nodes = [x if isinstance(x, Node) else self._reused_node(d, x) for x in items]
            d.tree_id, _ = self._writer.save(BlobType.TREE, encode_tree([n for n in nodes if n is not None]))
        d.children = []
        d.parent = None
        with self._mu:
            if p is None:
                self.result.dirs_new += 1
            elif p.tree_id == d.tree_id:
                self.result.dirs_unmodified += 1
            else:
                self.result.dirs_changed += 1

    def _reused_node(self, d: _Dir, raw: Raw) -> Node | None:
        """A reused parent entry as a node, for a changed directory's new tree."""
        node = to_node(raw)
        if node is not None:
            return node
        # the entry does not decode (never written by us or restic): read the file after all
        name = unquote(raw["name"])
        t = _Tally()
        try:
            leaf = self._leaf(name, d.child_path(name), None, False, t)
        finally:
            self._add(t)
        assert not isinstance(leaf, dict)
        return leaf

    def _read_file(self, path: bytes, node: Node, is_new: bool, fd: int, t: _Tally) -> Node | None:
        """Read, chunk and save a file; ``fd`` is the file already open (from ``fstat``) or -1."""
        if self._failure is not None:
            return None
        self._check_failure()  # cancelled: the error reaches the walk through the future
        own = fd < 0
        if own:
            try:
                fd = _open(path)
            except OSError as e:
                self._error(path, e)
                return None
        try:
            if own:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    self._error(path, OSError(0, "not a regular file any more"))
                    return None
                size = st.st_size
            else:
                size = node.size
            if size > MIN_CHUNK:
                self.progress.add(current=os.fsdecode(path))  # small files pass too fast to show
                content, size = self._chunk_fd(fd)
            elif size:
                data = _read_all(fd, size)
                content = [self._save_chunk(data, t)] if data else []
                size = len(data)
                t.shown += size
            else:
                content = []
        except OSError as e:
            self._error(path, e)
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
        for data in stream_chunks(fd):
            self._check_failure()
            n = len(data)
            content.append(self._save_chunk(data, None))
            self.progress.add(nbytes=n)
            total += n
        return content, total

    def _save_chunk(self, data: bytes, t: _Tally | None) -> bytes:
        blob_id = hashlib.sha256(data).digest()
        writer = self._writer
        assert writer is not None and self._savers is not None
        if len(data) < _INLINE_SAVE:
            # a small chunk costs less to compress here than to hand to a saver thread;
            # ``save`` skips it if it is known
            self._check_failure()
            if writer.save(BlobType.DATA, data, blob_id)[1]:
                if t is not None:
                    t.blobs += 1
                else:
                    with self._mu:
                        self._data_blobs += 1
            return blob_id
        if writer.is_known(BlobType.DATA, blob_id):
            return blob_id
        self._check_failure()
        self._inflight.acquire()
        try:
            fut = self._savers.submit(writer.save, BlobType.DATA, data, blob_id)
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
            with self._mu:
                if self._failure is None:
                    self._failure = e
        elif fut.result()[1]:
            with self._mu:
                self._data_blobs += 1

    # -- errors and scanning --------------------------------------------------------------------

    def _check_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self.cancel.is_set():
            raise BackupCancelled("backup cancelled; no snapshot was saved")

    def _error(self, path: bytes, e: OSError) -> None:
        msg = f"{os.fsdecode(path)}: {e.strerror or e}"
        with self._mu:
            self.result.errors.append(msg)
        with self.progress.lock:
            self.progress.c.errors += 1

    def _scan(self, targets: list[bytes]) -> None:
        """Count files and bytes ahead of the backup, for the percentage and ETA."""
        files = 0
        nbytes = 0
        excluder = self.opts.excluder
        stack = list(targets)
        while stack:
            p = stack.pop()
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                try:
                    for name in os.listdir(p):
                        child = p.rstrip(b"/") + b"/" + name
                        if not (excluder and excluder.excluded(os.fsdecode(os.path.abspath(child)))):
                            stack.append(child)
                except OSError:
                    pass
            elif not stat.S_ISSOCK(st.st_mode):
                files += 1
                if stat.S_ISREG(st.st_mode):
                    nbytes += st.st_size
            if files % 1000 == 0:
                with self.progress.lock:
                    self.progress.c.files_total, self.progress.c.bytes_total = files, nbytes
        with self.progress.lock:
            self.progress.c.files_total, self.progress.c.bytes_total = files, nbytes
            self.progress.c.scan_done = True


_WINDOW = 3 * MAX_CHUNK
_windows = threading.local()  # each thread's free window buffers


def stream_chunks(fd: int) -> Iterator[bytes]:
    """FastCDC chunks of a file, read through a bounded window (no mmap: RSS stays flat).

    Every chunk but the window's last is cut before the window's end, so the cut points equal
    those of chunking the whole file at once; the last one is carried over to the next window
    (it is at most ``MAX_CHUNK``, so each window yields at least two chunks). The window is a
    buffer kept per thread and read into: a fresh 24 MiB buffer per window cost page faults
    and a copy of everything read, under the GIL.
    """
    free: list[bytearray] = _windows.__dict__.setdefault("free", [])
    buf = free.pop() if free else bytearray(_WINDOW)
    view = memoryview(buf)
    try:
        kept = 0  # bytes carried over to the front of the window
        eof = False
        while not eof:
            n = kept
            while n < _WINDOW:
                got = os.readv(fd, [view[n:]])
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


def _username() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def run_backup(
    repo: Repository,
    opts: BackupOptions,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> BackupResult:
    """Back up ``opts.paths`` into ``repo`` under a shared lock; returns the summary.

    Setting ``cancel`` stops the backup (``BackupCancelled``) without saving a snapshot.
    """
    with repo.lock(meanwhile=repo.load_index), fewer_collections():
        repo.adopt_unindexed_packs()
        return Archiver(repo, opts, progress, cancel).run()


__all__ = ["Archiver", "BackupCancelled", "run_backup"]
