"""Restore a file snapshot (or a subtree of one) into a directory.

1. Walk the tree: create directories, symlinks, devices and empty regular files of their final
   size (holes where the data is zero); refuse any name that could escape the target.
2. Plan by pack: every data blob needed, with every (file, offset) it goes to; all-zero chunks
   are skipped, leaving holes.
3. ``workers`` threads each take a pack, read the needed byte ranges of it once, decrypt each
   blob once and write it to every place it belongs.
4. Apply metadata: files, then directories deepest first (so writing children does not change
   their parents' times); ownership only when running as root.

``run_restore`` follows the run contract (``e3backup.contract``). A set ``cancel`` event stops
the walk, every pack worker at its next blob and the verification: ``Cancelled``, and what was
restored so far stays in the target (a restore never deletes anything it did not write).
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..budget import MemoryBudget
from ..contract import Cancel, OnEvent, check_cancel
from ..errors import E3Error, IntegrityError, UsageError
from ..formats.image import nonzero_runs, pwrite_all
from ..platform.compat import O_BINARY, O_NOFOLLOW, is_superuser
from ..platform.windows.filemeta import FileMetaApi, from_generic, native_file_meta
from ..progress import Progress
from ..repo.blob import BlobType
from ..repo.node import Node, unix_perm
from ..repo.pack import PackedBlob
from ..repo.repository import Repository
from ..repo.snapshot import Snapshot
from .packs import MAX_RANGE, read_blobs
from .writable import refuse_unwritable_directory

DEFAULT_WORKERS = 8
MAX_WORKERS = 32  # the seeds cap ``restore_kopia_parallel`` at 32


@dataclass
class RestoreOptions:
    target: str
    includes: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    verify: bool = False
    workers: int = DEFAULT_WORKERS  # pack readers/writers in parallel
    sparse: bool = True
    snapshot: str = "latest"  # snapshot ID, prefix or "latest", optionally ":sub/path"
    conflict: str = "overwrite"  # an existing file at a path: "overwrite", "skip" or "keep_both"
    # --max-memory / policy max_memory_mb: bounds the pack ranges read at once (``restore_sizing``)
    memory: MemoryBudget = field(default_factory=MemoryBudget)
    # Windows: set the attributes, creation time and security descriptor stored in the nodes'
    # generic_attributes (ours or restic's); None elsewhere. Tests give a double.
    windows_meta: FileMetaApi | None = field(default_factory=native_file_meta)


@dataclass
class RestoreResult:
    files: int = 0
    dirs: int = 0
    others: int = 0
    bytes_written: int = 0
    total_bytes: int = 0
    verified_files: int = 0
    workers: int = 0
    skipped: int = 0  # existing files left alone (conflict "skip")
    renamed: list[str] = field(default_factory=list)  # restored beside an existing file ("keep_both")
    failed_files: list[str] = field(default_factory=list)
    """Files whose data could not be read (a corrupt or missing blob or pack): removed from the
    target, never left holding zeros; each is also named in ``errors`` with the reason."""
    errors: list[str] = field(default_factory=list)

    def summary_json(self) -> dict[str, object]:
        return {
            "message_type": "summary",
            "files_restored": self.files,
            "dirs_restored": self.dirs,
            "others_restored": self.others,
            "total_bytes": self.total_bytes,
            "bytes_written": self.bytes_written,
            "verified_files": self.verified_files,
            "files_skipped": self.skipped,
            "files_renamed": len(self.renamed),
            "workers": self.workers,
            "files_failed": len(self.failed_files),
            "error_count": len(self.errors),
            "errors": self.errors[:100],
        }


CONFLICTS = ("overwrite", "skip", "keep_both")


def free_name(path: bytes) -> bytes:
    """``name (restored).ext``, then ``name (restored 2).ext``...: the first that does not exist."""
    head, _, name = path.rpartition(b"/")
    stem, dot, ext = name.rpartition(b".") if b"." in name.lstrip(b".") else (name, b"", b"")
    for n in range(1, 10_000):
        mark = b" (restored)" if n == 1 else b" (restored %d)" % n
        candidate = head + b"/" + stem + mark + dot + ext
        if not os.path.lexists(candidate):
            return candidate
    raise UsageError(f"{os.fsdecode(path)}: no free name left beside it")


@dataclass
class _FileJob:
    path: bytes
    node: Node
    offsets: list[int] = field(default_factory=list)


def check_name(name: bytes) -> None:
    """Refuse names that would leave the directory they are restored into."""
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise IntegrityError(f"refusing to restore invalid name {name!r}: it could escape the target directory")


def resolve(repo: Repository, snap: Snapshot, subpath: str) -> tuple[list[Node], str]:
    """The nodes to restore at the target's top level, and their path in the snapshot."""
    parts = [p for p in subpath.split("/") if p]
    nodes = repo.load_tree(snap.tree)
    prefix = ""
    for i, part in enumerate(parts):
        match = next((n for n in nodes if n.name == os.fsencode(part)), None)
        if match is None:
            raise UsageError(f"path /{'/'.join(parts[: i + 1])} not found in snapshot {snap.short_id}")
        prefix += "/" + part
        if i == len(parts) - 1 and match.type != "dir":
            return [match], prefix.rsplit("/", 1)[0]
        if match.type != "dir" or match.subtree is None:
            raise UsageError(f"{prefix} in snapshot {snap.short_id} is not a directory")
        nodes = repo.load_tree(match.subtree)
    return nodes, prefix


class FileRestorer:
    def __init__(
        self,
        repo: Repository,
        opts: RestoreOptions,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> None:
        self.repo = repo
        self.opts = opts
        self.progress = progress or Progress(mode="quiet")
        self.cancel = cancel
        self.result = RestoreResult(workers=opts.workers)
        self._files: list[_FileJob] = []
        self._dirs: list[tuple[bytes, Node]] = []
        self._others: list[tuple[bytes, Node]] = []
        self._links: dict[tuple[int, int], bytes] = {}
        self._more_links: dict[bytes, list[bytes]] = {}  # first path of a hard-linked file -> the others
        self._failed: dict[int, str] = {}  # index in _files -> why its data could not be restored
        self._is_root = is_superuser()
        self._mu = threading.Lock()

    def run(self, snap: Snapshot, subpath: str = "") -> RestoreResult:
        if self.opts.conflict not in CONFLICTS:
            raise UsageError(f"conflict must be one of {', '.join(CONFLICTS)}, not {self.opts.conflict!r}")
        top, prefix = resolve(self.repo, snap, subpath)
        target = os.fsencode(os.path.abspath(self.opts.target))
        refuse_unwritable_directory(self.opts.target)
        os.makedirs(target, exist_ok=True)
        if not os.path.isdir(target) or os.path.islink(target):
            raise UsageError(f"restore target {self.opts.target} is not a directory")
        self._walk(top, target, prefix.encode())
        self.result.total_bytes = sum(j.node.size for j in self._files)
        self.progress.set_total(self.result.total_bytes, files=len(self._files))
        self._restore_contents()
        self._remove_failed()
        for fi, job in enumerate(self._files):
            if fi not in self._failed:
                self._apply_meta(job.path, job.node)
        for path, node in self._others:
            self._apply_meta(path, node)
        for path, node in reversed(self._dirs):
            self._apply_meta(path, node)
        if self.opts.verify:
            self._verify()
        return self.result

    # -- walking --------------------------------------------------------------------------------

    def _selected(self, snap_path: bytes, is_dir: bool) -> tuple[bool, bool]:
        """(restore this node, descend into it)."""
        p = os.fsdecode(snap_path)
        if any(_match(pat, p) for pat in self.opts.excludes):
            return False, False
        if not self.opts.includes:
            return True, True
        if any(_match(pat, p) for pat in self.opts.includes):
            return True, True
        # a directory above an included path is restored so the path has somewhere to go
        below = any(_could_match_below(pat, p) for pat in self.opts.includes) if is_dir else False
        return below, below

    def _check_cancel(self) -> None:
        check_cancel(self.cancel, f"restore cancelled; what was restored so far is left in {self.opts.target}")

    def _walk(self, nodes: list[Node], dest: bytes, snap_prefix: bytes) -> None:
        seen: set[bytes] = set()
        self._check_cancel()
        for node in nodes:
            check_name(node.name)
            if node.name in seen:
                raise IntegrityError(f"duplicate name {node.display_name!r} in tree at {os.fsdecode(snap_prefix)}")
            seen.add(node.name)
            path = dest + b"/" + node.name
            snap_path = snap_prefix + b"/" + node.name
            take, descend = self._selected(snap_path, node.type == "dir")
            if not take:
                continue
            try:
                self._create(path, node, snap_path, descend)
            except OSError as e:
                self.result.errors.append(f"{os.fsdecode(path)}: {e.strerror or e}")

    def _create(self, path: bytes, node: Node, snap_path: bytes, descend: bool) -> None:
        t = node.type
        if t == "dir":
            make_dir(path)
            self._dirs.append((path, node))
            self.result.dirs += 1
            if descend and node.subtree is not None:
                try:
                    nodes = self.repo.load_tree(node.subtree)
                except E3Error as e:  # the rest of the snapshot can still be restored
                    self.result.errors.append(f"{os.fsdecode(path)}: directory contents not restored: {e}")
                    return
                self._walk(nodes, path, snap_path)
            return
        if self.opts.conflict != "overwrite" and os.path.lexists(path):
            if self.opts.conflict == "skip":
                self.result.skipped += 1
                return
            path = free_name(path)  # keep_both
            self.result.renamed.append(os.fsdecode(path))
        remove_non_dir(path)
        if t == "file":
            key = (node.device_id, node.inode)
            if node.links > 1 and node.inode and key in self._links:
                os.link(self._links[key], path)
                self._more_links.setdefault(self._links[key], []).append(path)
                self.result.files += 1
                return
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | O_NOFOLLOW | O_BINARY, 0o600)
            try:
                if node.size:
                    os.ftruncate(fd, node.size)
            finally:
                os.close(fd)
            if node.links > 1 and node.inode:
                self._links[key] = path
            self._files.append(_FileJob(path, node))
            self.result.files += 1
            return
        if t == "symlink":
            os.symlink(node.linktarget or b"", path)
        elif t in ("fifo", "dev", "chardev"):
            if sys.platform == "win32":
                self.result.errors.append(f"{os.fsdecode(path)}: a {t} cannot be restored on Windows")
            elif t == "fifo":
                os.mkfifo(path, 0o600)
            else:
                kind = stat.S_IFBLK if t == "dev" else stat.S_IFCHR
                os.mknod(path, kind | 0o600, node.device)
        else:
            self.result.errors.append(f"{os.fsdecode(path)}: cannot restore node of type {t!r}")
            return
        self._others.append((path, node))
        self.result.others += 1

    # -- contents -------------------------------------------------------------------------------

    def _restore_contents(self) -> None:
        index = self.repo.index
        plan: dict[str, dict[PackedBlob, list[tuple[int, int]]]] = {}
        for fi, job in enumerate(self._files):
            offset = 0
            for blob_id in job.node.content or []:
                loc = index.lookup(BlobType.DATA, blob_id)
                if loc is None:
                    self._fail(fi, f"data blob {blob_id.hex()} not found in index")
                    break
                n = loc.blob.plaintext_length
                plan.setdefault(loc.pack_id, {}).setdefault(loc.blob, []).append((fi, offset))
                offset += n
            if offset != job.node.size:
                self.result.errors.append(
                    f"{os.fsdecode(job.path)}: size {job.node.size} in snapshot, content holds {offset} bytes"
                )
        workers, self._max_range = restore_sizing(self.opts.memory.with_index(len(self.repo.index)), self.opts.workers)
        self.result.workers = workers  # what ran: the budget may have lowered the option's count
        with ThreadPoolExecutor(workers, thread_name_prefix="restore") as ex:
            for _ in ex.map(self._restore_pack, plan.items()):
                pass
        for _job in self._files:
            self.progress.add(files=1)

    def _fail(self, fi: int, reason: str) -> None:
        with self._mu:
            self._failed.setdefault(fi, reason)

    def _restore_pack(self, item: tuple[str, dict[PackedBlob, list[tuple[int, int]]]]) -> None:
        """Write every blob of one pack where it goes; a blob (or pack range) that cannot be read
        fails the files that need it, and only them."""
        pack_id, blobs = item
        self._check_cancel()
        failed = self._blob_failed(blobs)
        for b, plain in read_blobs(self.repo, pack_id, list(blobs), on_error=failed, max_range=self._max_range):
            self._check_cancel()
            for fi, off in blobs[b]:
                if fi in self._failed:
                    continue
                path = self._files[fi].path
                fd = os.open(path, os.O_WRONLY | O_NOFOLLOW | O_BINARY)
                try:
                    if self.opts.sparse:
                        pwrite_sparse(fd, plain, off)
                    else:
                        pwrite_all(fd, memoryview(plain), off)
                finally:
                    os.close(fd)
                self.progress.add(nbytes=len(plain))
                with self._mu:
                    self.result.bytes_written += len(plain)

    def _blob_failed(self, blobs: dict[PackedBlob, list[tuple[int, int]]]) -> Callable[[PackedBlob, E3Error], None]:
        def failed(b: PackedBlob, e: E3Error) -> None:
            for fi, _ in blobs[b]:
                self._fail(fi, str(e))

        return failed

    def _remove_failed(self) -> None:
        """Files whose data could not be restored are removed (every hard link of them), so none
        is left looking complete; each is named with the reason."""
        for fi in sorted(self._failed):
            job = self._files[fi]
            for path in (job.path, *self._more_links.get(job.path, ())):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    self.result.errors.append(f"{os.fsdecode(path)}: removing the incomplete file: {e.strerror}")
                self.result.failed_files.append(os.fsdecode(path))
                self.result.errors.append(f"{os.fsdecode(path)}: not restored: {self._failed[fi]}")
                self.result.files -= 1

    # -- metadata -------------------------------------------------------------------------------

    def _apply_meta(self, path: bytes, node: Node) -> None:
        is_link = node.type == "symlink"
        try:
            if sys.platform == "win32":  # no owners by number, no xattrs; utime cannot skip a link
                if not is_link:
                    os.chmod(path, unix_perm(node.mode))  # only the read-only attribute
                    os.utime(path, ns=(node.atime or node.mtime, node.mtime))
                return
            if self._is_root:
                os.lchown(path, node.uid, node.gid)
            if not is_link:
                os.chmod(path, unix_perm(node.mode))
            for name, value in node.xattrs:
                try:
                    os.setxattr(path, name, value, follow_symlinks=False)
                except OSError as e:
                    if e.errno not in (errno.ENOTSUP, errno.EPERM):
                        raise
            os.utime(path, ns=(node.atime or node.mtime, node.mtime), follow_symlinks=False)
        except OSError as e:
            self.result.errors.append(f"{os.fsdecode(path)}: setting metadata: {e.strerror or e}")
        finally:
            self._apply_windows_meta(path, node)

    def _apply_windows_meta(self, path: bytes, node: Node) -> None:
        """Attributes, creation time and ACLs last: a read-only file is complete before it is."""
        api = self.opts.windows_meta
        if api is None or node.type == "symlink" or not node.extra.get("generic_attributes"):
            return
        try:
            meta = from_generic(node.extra["generic_attributes"])
            if meta is not None:
                for note in api.write(os.fsdecode(path), meta):
                    self.result.errors.append(f"{os.fsdecode(path)}: {note}")
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            self.result.errors.append(f"{os.fsdecode(path)}: setting Windows attributes: {reason}")

    # -- verification ---------------------------------------------------------------------------

    def _verify(self) -> None:
        index = self.repo.index

        def verify(job: _FileJob) -> str | None:
            self._check_cancel()
            try:
                st = os.lstat(job.path)
                if st.st_size != job.node.size:
                    return f"{os.fsdecode(job.path)}: size {st.st_size}, expected {job.node.size}"
                with open(job.path, "rb") as f:
                    for blob_id in job.node.content or []:
                        loc = index.lookup(BlobType.DATA, blob_id)
                        assert loc is not None
                        data = f.read(loc.blob.plaintext_length)
                        if hashlib.sha256(data).digest() != blob_id:
                            return f"{os.fsdecode(job.path)}: content differs at offset {f.tell() - len(data)}"
            except OSError as e:
                return f"{os.fsdecode(job.path)}: {e.strerror}"
            return None

        with ThreadPoolExecutor(self.opts.workers) as ex:
            restored = [job for fi, job in enumerate(self._files) if fi not in self._failed]
            for err in ex.map(verify, restored):
                if err:
                    self.result.errors.append("verify: " + err)
                else:
                    self.result.verified_files += 1


_SPARSE_BLOCK = 64 * 1024


def pwrite_sparse(fd: int, data: bytes, offset: int) -> None:
    """Write ``data`` at ``offset`` skipping all-zero 64 KiB blocks (the file is pre-sized, so
    they read back as zeros and stay holes)."""
    view = memoryview(data)
    for start, end in nonzero_runs(view, _SPARSE_BLOCK):
        pwrite_all(fd, view[start:end], offset + start)


def make_dir(path: bytes, mode: int = 0o700) -> None:
    """A folder at ``path``; a file or link in the way is replaced (never followed)."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path)  # never follow an existing symlink out of the target
            os.mkdir(path, mode)


def remove_non_dir(path: bytes) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise E3Error(f"{os.fsdecode(path)}: a directory is in the way")
    os.unlink(path)


def _match(pattern: str, path: str) -> bool:
    """restic-style: a pattern without ``/`` matches any component, else the path or a parent."""
    if "/" not in pattern.rstrip("/"):
        return any(fnmatch.fnmatchcase(c, pattern) for c in path.split("/") if c)
    pat = pattern.rstrip("/")
    parts = path.split("/")
    return any(fnmatch.fnmatchcase("/".join(parts[:i]), pat) for i in range(2, len(parts) + 1))


def _could_match_below(pattern: str, dir_path: str) -> bool:
    if "/" not in pattern.rstrip("/"):
        return True
    pat_parts = pattern.rstrip("/").split("/")
    dir_parts = dir_path.split("/")
    if len(dir_parts) >= len(pat_parts):
        return False
    return all(fnmatch.fnmatchcase(d, p) for d, p in zip(dir_parts, pat_parts, strict=False))


RANGE_SHARE = 32 << 20  # pack ranges held by all workers at once
_PER_WORKER = 4 << 20  # a decoded blob and its decompressed copy (twice the average chunk)


def restore_sizing(budget: MemoryBudget, workers: int) -> tuple[int, int]:
    """Workers and the largest pack range each reads at once: ``RANGE_SHARE`` over the workers
    (every worker reads a range of at least one blob); a smaller budget lowers the workers."""
    budget.require(_PER_WORKER + (1 << 20), "this restore")
    workers = max(1, min(workers, budget.work // (_PER_WORKER + (1 << 20))))
    share = min(RANGE_SHARE, budget.work - workers * _PER_WORKER)
    return workers, max(1 << 20, min(MAX_RANGE, share // workers))


def run_restore(
    repo: Repository,
    opts: RestoreOptions,
    progress: Progress | None = None,
    on_event: OnEvent | None = None,
    cancel: Cancel | None = None,
) -> RestoreResult:
    """Restore ``opts.snapshot`` (``ID[:sub/path]``) into ``opts.target`` under a shared lock."""
    ref, _, subpath = opts.snapshot.partition(":")
    with repo.lock(meanwhile=repo.load_index):
        snap = repo.find_snapshot(ref)
        return FileRestorer(repo, opts, progress, cancel).run(snap, subpath)


__all__ = [
    "CONFLICTS",
    "DEFAULT_WORKERS",
    "MAX_WORKERS",
    "FileRestorer",
    "RestoreOptions",
    "RestoreResult",
    "check_name",
    "free_name",
    "make_dir",
    "remove_non_dir",
    "resolve",
    "run_restore",
]
