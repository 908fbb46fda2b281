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
from ...repo.node import Node
from ...repo.repository import Repository
from ...repo.snapshot import Snapshot
from ...repo.timefmt import format_ns, now_ns
from ...repo.tree import encode_tree
from ...repo.writer import BlobWriter
from .metadata import node_from_stat
from .options import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK, BackupOptions
from .result import BackupResult
from .targets import VirtualDir, build

_MAX_PENDING_DIRS = 512
_LEAF_BATCH = 32
_INLINE_SAVE = 256 * 1024
_O_NOATIME = getattr(os, "O_NOATIME", 0)


@dataclass
class _Dir:
    node: Node | None  # None for the snapshot root
    parent_subtree: bytes | None
    parent_nodes: list[Node] = field(default_factory=list)
    children: list[Node | Future[Node | None] | Future[list[Node | None]] | _Dir] = field(default_factory=list)
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

    def _parent_nodes(self, d: _Dir) -> dict[bytes, Node]:
        if d.parent_subtree is None:
            return {}
        try:
            d.parent_nodes = sorted(self.repo.load_tree(d.parent_subtree), key=lambda n: n.name)
        except E3Error:
            return {}  # an unreadable parent only costs a full read
        return {n.name: n for n in d.parent_nodes}

    def _walk_virtual(self, vd: VirtualDir, node: Node | None, parent_subtree: bytes | None) -> _Dir:
        if vd.contents_of is not None:
            st = os.lstat(vd.contents_of)
            return self._walk_dir(vd.contents_of, None, parent_subtree, st.st_dev)
        d = _Dir(node, parent_subtree)
        parent_nodes = self._parent_nodes(d)
        for name, child in sorted(vd.children.items()):
            pnode = parent_nodes.get(name)
            psub = pnode.subtree if pnode is not None and pnode.type == "dir" else None
            if isinstance(child, VirtualDir):
                assert child.fs_path is not None
                st = os.lstat(child.fs_path)
                cnode = node_from_stat(name, child.fs_path, st, self.opts.with_atime)
                d.children.append(self._walk_virtual(child, cnode, psub))
            else:
                entry = self._entry(name, child, None, pnode)
                if entry is not None:
                    d.children.append(entry)
        self._push(d)
        return d

    def _entry(
        self, name: bytes, path: bytes, dev: int | None, pnode: Node | None
    ) -> Node | Future[Node | None] | _Dir | None:
        """A backup target (or any entry the main thread must stat itself)."""
        try:
            st = os.lstat(path)
        except OSError as e:
            self._error(path, e)
            return None
        if stat.S_ISDIR(st.st_mode):
            return self._dir_entry(name, path, st, dev, pnode)
        assert self._readers is not None
        return self._readers.submit(self._leaf, name, path, pnode)

    def _dir_entry(
        self, name: bytes, path: bytes, st: os.stat_result, dev: int | None, pnode: Node | None
    ) -> Node | _Dir | None:
        try:
            node = node_from_stat(name, path, st, self.opts.with_atime)
        except OSError as e:
            self._error(path, e)
            return None
        psub = pnode.subtree if pnode is not None and pnode.type == "dir" else None
        if self.opts.one_file_system and dev is not None and st.st_dev != dev:
            node.subtree = self._empty_tree()  # a mount point: kept, but not crossed
            return node
        return self._walk_dir(path, node, psub, st.st_dev if dev is None else dev)

    def _walk_dir(self, path: bytes, node: Node | None, parent_subtree: bytes | None, dev: int) -> _Dir:
        """List a directory; sub-directories are walked here, everything else goes to the readers
        (their lstat, xattrs and reads then run in parallel, away from the walking thread)."""
        self._check_failure()
        d = _Dir(node, parent_subtree)
        parent_nodes = self._parent_nodes(d)
        try:
            with os.scandir(path) as it:
                entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
        except OSError as e:
            self._error(path, e)
            entries = []
        excluder = self.opts.excluder
        assert self._readers is not None
        base = path if path.endswith(b"/") else path + b"/"
        batch: list[tuple[bytes, bytes, Node | None]] = []
        for name, is_dir in entries:
            child_path = base + name
            if excluder and excluder.excluded(os.fsdecode(os.path.abspath(child_path))):
                continue
            pnode = parent_nodes.get(name)
            if is_dir:
                entry = self._entry(name, child_path, dev, pnode)
                if entry is not None:
                    d.children.append(entry)
                continue
            # files go to the readers in batches: one job per file costs more than a small file
            batch.append((name, child_path, pnode))
            if len(batch) == _LEAF_BATCH:
                d.children.append(self._readers.submit(self._leaves, batch))
                batch = []
        if batch:
            d.children.append(self._readers.submit(self._leaves, batch))
        self._push(d)
        return d

    def _leaves(self, batch: list[tuple[bytes, bytes, Node | None]]) -> list[Node | None]:
        return [self._leaf(name, path, pnode) for name, path, pnode in batch]

    # -- leaves (run in the reader threads) --------------------------------------------------------

    def _leaf(self, name: bytes, path: bytes, pnode: Node | None) -> Node | None:
        if self._failure is not None:
            return None
        try:
            st = os.lstat(path)
            if self._unchanged(pnode, st):
                assert pnode is not None
                self._count_unmodified(pnode.size)
                return pnode
            node = node_from_stat(name, path, st, self.opts.with_atime)
        except OSError as e:
            self._error(path, e)
            return None
        if node.type == "socket":
            return None  # restic skips sockets; they cannot be restored meaningfully
        if node.type == "dir":
            # it became a directory after the listing: store it empty rather than racing it
            node.subtree = self._empty_tree()
            return node
        if node.type != "file":
            self.progress.add(files=1)
            with self._mu:
                self.result.total_files_processed += 1
            return node
        return self._file(path, node, pnode)

    def _unchanged(self, pnode: Node | None, st: os.stat_result) -> bool:
        """The parent's node still describes this file: same inode, size, mtime and ctime.

        Every change of content, mode, owner, link count or xattrs moves ctime, so the parent's
        whole node (not just its content) is reused without reading xattrs or names again.
        """
        return (
            pnode is not None
            and pnode.type == "file"
            and pnode.content is not None
            and stat.S_ISREG(st.st_mode)
            and pnode.mtime == st.st_mtime_ns
            and pnode.ctime == st.st_ctime_ns
            and pnode.size == st.st_size
            and pnode.inode == st.st_ino
            and pnode.device_id == st.st_dev
            and not self.opts.with_atime
            and all(self.repo.index.has(BlobType.DATA, c) for c in pnode.content)
        )

    def _count_unmodified(self, size: int) -> None:
        self.progress.add(files=1, nbytes=size)
        with self._mu:
            self.result.files_unmodified += 1
            self.result.total_files_processed += 1
            self.result.total_bytes_processed += size

    def _file(self, path: bytes, node: Node, pnode: Node | None) -> Node | None:
        if (
            pnode is not None
            and pnode.type == "file"
            and pnode.content is not None
            and pnode.mtime == node.mtime
            and pnode.ctime == node.ctime
            and pnode.size == node.size
            and pnode.inode == node.inode
            and all(self.repo.index.has(BlobType.DATA, c) for c in pnode.content)
        ):
            node.content = list(pnode.content)
            self.progress.add(files=1, nbytes=node.size)
            with self._mu:
                self.result.files_unmodified += 1
                self.result.total_files_processed += 1
                self.result.total_bytes_processed += node.size
            return node
        is_new = pnode is None
        if node.links <= 1:
            return self._read_file(path, node, is_new)
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
            self.progress.add(nbytes=node.size)
            self._count_file(node.size, 0, is_new)
            return node
        try:
            result = self._read_file(path, node, is_new)
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
        nodes: list[Node] = []
        for c in d.children:
            if isinstance(c, Future):
                n = c.result()
                if isinstance(n, list):
                    nodes.extend(x for x in n if x is not None)
                elif n is not None:
                    nodes.append(n)
            elif isinstance(c, _Dir):
                assert c.node is not None and c.tree_id is not None
                c.node.subtree = c.tree_id
                nodes.append(c.node)
            else:
                nodes.append(c)
        self._check_failure()
        assert self._writer is not None
        nodes.sort(key=lambda n: n.name)
        if d.parent_subtree is not None and nodes == d.parent_nodes:
            d.tree_id = d.parent_subtree  # unchanged: the parent's tree, not encoded again
        else:
            d.tree_id, _ = self._writer.save(BlobType.TREE, encode_tree(nodes))
        d.children = []
        d.parent_nodes = []
        with self._mu:
            if d.parent_subtree is None:
                self.result.dirs_new += 1
            elif d.parent_subtree == d.tree_id:
                self.result.dirs_unmodified += 1
            else:
                self.result.dirs_changed += 1

    def _count_file(self, size: int, read: int, is_new: bool) -> None:
        self.progress.add(files=1)
        with self._mu:
            if is_new:
                self.result.files_new += 1
            else:
                self.result.files_changed += 1
            self.result.total_files_processed += 1
            self.result.total_bytes_processed += size
            self.result.bytes_read += read

    def _read_file(self, path: bytes, node: Node, is_new: bool) -> Node | None:
        if self._failure is not None:
            return None
        self._check_failure()  # cancelled: the error reaches the walk through the future
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | _O_NOATIME)
        except PermissionError:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as e:
                self._error(path, e)
                return None
        except OSError as e:
            self._error(path, e)
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self._error(path, OSError(0, "not a regular file any more"))
                return None
            if st.st_size > MIN_CHUNK:  # small files pass too fast to be worth showing
                self.progress.add(current=os.fsdecode(path))
            content, size = self._chunk_fd(fd, st.st_size)
        except OSError as e:
            self._error(path, e)
            return None
        finally:
            os.close(fd)
        node.content = content
        node.size = size
        self._count_file(size, size, is_new)
        return node

    def _chunk_fd(self, fd: int, size: int) -> tuple[list[bytes], int]:
        if size == 0:
            return [], 0
        if size <= MIN_CHUNK:
            data = _read_all(fd, size)
            return ([self._save_chunk(data)] if data else []), len(data)
        content = []
        total = 0
        for data in stream_chunks(fd):
            self._check_failure()
            content.append(self._save_chunk(data))
            total += len(data)
        return content, total

    def _save_chunk(self, data: bytes) -> bytes:
        blob_id = hashlib.sha256(data).digest()
        self.progress.add(nbytes=len(data))
        writer = self._writer
        assert writer is not None and self._savers is not None
        if writer.is_known(BlobType.DATA, blob_id):
            return blob_id
        self._check_failure()
        if len(data) < _INLINE_SAVE:
            # a small chunk costs less to compress here than to hand to a saver thread
            _, added = writer.save(BlobType.DATA, data, blob_id)
            if added:
                with self._mu:
                    self._data_blobs += 1
            return blob_id
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


_WINDOW = 2 * MAX_CHUNK


def stream_chunks(fd: int) -> Iterator[bytes]:
    """FastCDC chunks of a file, read through a bounded window (no mmap: RSS stays flat).

    The window always holds at least ``MAX_CHUNK`` bytes past the start of the chunk being cut
    (or the end of the file), so the cut points equal those of chunking the whole file at once.
    """
    buf = b""
    eof = False
    while not eof or buf:
        if not eof and len(buf) < _WINDOW:
            more = os.read(fd, _WINDOW - len(buf) + MAX_CHUNK)
            if more:
                buf += more
                continue
            eof = True
        chunks = list(cdc_chunks(buf, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK))
        if not eof:
            chunks = chunks[:-1]  # the last one may be cut short by the window's end
        end = 0
        for ch in chunks:
            yield buf[ch.offset : ch.offset + ch.length]
            end = ch.offset + ch.length
        buf = buf[end:]
        if eof:
            return


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
    with repo.lock(meanwhile=repo.load_index):
        repo.adopt_unindexed_packs()
        return Archiver(repo, opts, progress, cancel).run()


__all__ = ["Archiver", "BackupCancelled", "run_backup"]
