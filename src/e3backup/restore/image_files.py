"""Restore files and folders picked in a disk image snapshot's partitions into a folder.

The agent reads the image from the repository (it holds the password, or the gateway's read
path) and each partition's ext2/3/4 or NTFS file system through our readers
(``mount.partitions``): nothing is mounted or restored whole. Snapshot paths are
``<partition>/<folder>/.../<name>``; ``snapshot`` is ``ID`` or ``ID:<base>``, and a picked path
lands at ``target / <path below base>`` (with no base: ``target / <partition> / ...``).

Only regular files and folders are written: links and special entries are counted and left
out. Every name comes through ``safe_name`` (no ``..``, ``/``, NUL), folders are made without
following a link that is in the way, files are opened with ``O_NOFOLLOW``: nothing is written
outside the target. A file is written from a temporary name beside it and renamed into place
only once complete, so a failed read never leaves a truncated file looking restored. Folder
and file times are the file system's; permissions are the restoring user's defaults (0644 and
0755 under its umask), as ext4 modes and NTFS ACLs are not carried over.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from ..contract import Cancel, OnEvent, check_cancel
from ..errors import Cancelled, E3Error, UsageError
from ..mount.partitions import StoredImage, entry_at, split, walk
from ..platform.compat import O_BINARY, O_NOFOLLOW
from ..progress import Progress
from ..repo.repository import Repository
from ..sources.fsread import FileSystemReader, FsEntry
from .files import CONFLICTS, check_name, free_name, make_dir, remove_non_dir
from .writable import refuse_unwritable_directory

MAX_ERRORS = 100


@dataclass
class ImageFilesOptions:
    target: str
    paths: list[str]  # picked snapshot paths, each inside the snapshot's base
    snapshot: str = "latest"  # ID, prefix or "latest", optionally ":<base>"
    conflict: str = "overwrite"  # an existing file: "overwrite", "skip" or "keep_both"
    verify: bool = True  # read every written file back and compare its SHA-256


@dataclass
class ImageFilesResult:
    files: int = 0
    dirs: int = 0
    left_out: int = 0  # links and special files
    bytes_written: int = 0
    total_bytes: int = 0
    verified_files: int = 0
    skipped: int = 0
    renamed: list[str] = field(default_factory=list)
    failed_files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary_json(self) -> dict[str, object]:
        return {
            "message_type": "summary",
            "files_restored": self.files,
            "dirs_restored": self.dirs,
            "others_left_out": self.left_out,
            "total_bytes": self.total_bytes,
            "bytes_written": self.bytes_written,
            "verified_files": self.verified_files,
            "files_skipped": self.skipped,
            "files_renamed": len(self.renamed),
            "files_failed": len(self.failed_files),
            "error_count": len(self.errors),
            "errors": self.errors[:MAX_ERRORS],
        }


@dataclass
class _Planned:
    dest: bytes
    entry: FsEntry | None  # None: a partition's root, or a folder above a picked path
    fs: FileSystemReader


def plan(img: StoredImage, base: str, paths: list[str], target: bytes) -> list[_Planned]:
    """Every folder and file to write, parents first; ``UsageError`` for a path outside ``base``."""
    base_parts = split(base)
    out: list[_Planned] = []
    folders: set[bytes] = set()  # the folders between the base and a picked path, made once
    for path in paths:
        parts = split(path)
        if parts[: len(base_parts)] != base_parts or len(parts) <= len(base_parts):
            raise UsageError(f"/{'/'.join(parts)} is not inside /{'/'.join(base_parts)}")
        for part in parts:
            check_name(os.fsencode(part))
        fs, entry = entry_at(img, parts)
        below = [os.fsencode(s) for s in parts[len(base_parts):]]
        for n in range(1, len(below)):
            folder = b"/".join([target, *below[:n]])
            if folder not in folders:
                folders.add(folder)
                out.append(_Planned(folder, None, fs))
        for sub, e in walk(fs, entry, parts[len(base_parts):]):
            out.append(_Planned(b"/".join([target, *(os.fsencode(s) for s in sub)]), e, fs))
    return out


class ImageFilesRestorer:
    def __init__(self, img: StoredImage, opts: ImageFilesOptions, progress: Progress | None = None,
                 cancel: Cancel | None = None) -> None:
        self.img = img
        self.opts = opts
        self.progress = progress or Progress(mode="quiet")
        self.cancel = cancel
        self.result = ImageFilesResult()
        self._dir_times: list[tuple[bytes, int]] = []

    def run(self, base: str) -> ImageFilesResult:
        if self.opts.conflict not in CONFLICTS:
            raise UsageError(f"conflict must be one of {', '.join(CONFLICTS)}, not {self.opts.conflict!r}")
        if not self.opts.paths:
            raise UsageError("no path picked: name the files and folders to restore")
        refuse_unwritable_directory(self.opts.target)
        target = os.fsencode(os.path.abspath(self.opts.target))
        os.makedirs(target, exist_ok=True)
        if not os.path.isdir(target) or os.path.islink(target):
            raise UsageError(f"restore target {self.opts.target} is not a directory")
        items = plan(self.img, base, self.opts.paths, target)
        files = [i for i in items if i.entry is not None and i.entry.type == "file"]
        self.result.total_bytes = sum(i.entry.size for i in files if i.entry is not None)
        self.progress.set_total(self.result.total_bytes, files=len(files))
        for item in items:
            self._check_cancel()
            try:
                self._write(item)
            except OSError as e:
                self._error(f"{os.fsdecode(item.dest)}: {e.strerror or e}")
        for path, mtime_ns in reversed(self._dir_times):  # children first: writing them moved the times
            try:
                os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
            except OSError as e:
                self._error(f"{os.fsdecode(path)}: setting its time: {e.strerror or e}")
        return self.result

    def _check_cancel(self) -> None:
        check_cancel(self.cancel, f"restore cancelled; what was restored so far is left in {self.opts.target}")

    def _error(self, message: str) -> None:
        self.result.errors.append(message)
        self.progress.add_error()

    def _write(self, item: _Planned) -> None:
        e = item.entry
        if e is None or e.type == "dir":
            make_dir(item.dest, 0o755)
            if e is not None:
                self._dir_times.append((item.dest, e.mtime_ns))
            self.result.dirs += 1
            return
        if e.type != "file":
            self.result.left_out += 1
            return
        dest = item.dest
        if os.path.lexists(dest) and self.opts.conflict != "overwrite":
            if self.opts.conflict == "skip":
                self.result.skipped += 1
                self.progress.add(files=1, nbytes=e.size)
                return
            dest = free_name(dest)
            self.result.renamed.append(os.fsdecode(dest))
        self._write_file(item.fs, e, dest)

    def _write_file(self, fs: FileSystemReader, e: FsEntry, dest: bytes) -> None:
        """Into a temporary name beside ``dest``, renamed into place once complete (and read
        back equal, with ``verify``); a file that cannot be read or written is named, never left."""
        head, _, name = dest.rpartition(b"/")
        temp = head + b"/." + name[:200] + b".e3restore"
        digest = hashlib.sha256()
        written = 0
        try:
            remove_non_dir(temp)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_BINARY, 0o644)
            try:
                for chunk in fs.read(e.ref):
                    self._check_cancel()
                    _write_all(fd, chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    self.progress.add(nbytes=len(chunk))
            finally:
                os.close(fd)
            if written != e.size:
                raise E3Error(f"read {written} bytes, the file system says {e.size}")
            if self.opts.verify and _sha256(temp) != digest.digest():
                raise E3Error("what was written reads back differently")
            os.utime(temp, ns=(e.mtime_ns, e.mtime_ns))
            remove_non_dir(dest)
            os.rename(temp, dest)
        except Cancelled:
            _unlink(temp)
            raise
        except (E3Error, OSError) as err:
            _unlink(temp)
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            self.result.failed_files.append(os.fsdecode(dest))
            self._error(f"{os.fsdecode(dest)}: not restored: {reason}")
            return
        self.result.files += 1
        self.result.bytes_written += written
        self.result.verified_files += int(self.opts.verify)
        self.progress.add(files=1)


def _unlink(path: bytes) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _sha256(path: bytes) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            h.update(piece)
    return h.digest()


def run_image_files_restore(
    repo: Repository,
    opts: ImageFilesOptions,
    progress: Progress | None = None,
    on_event: OnEvent | None = None,
    cancel: Cancel | None = None,
) -> ImageFilesResult:
    """Restore the picked paths of ``opts.snapshot`` (``ID[:base]``) into ``opts.target`` under a
    shared lock."""
    ref, _, base = opts.snapshot.partition(":")
    with repo.lock(meanwhile=repo.load_index):
        snap = repo.find_snapshot(ref)
        img = StoredImage.load(repo, snap)
        return ImageFilesRestorer(img, opts, progress, cancel).run(base)


__all__ = ["ImageFilesOptions", "ImageFilesRestorer", "ImageFilesResult", "plan", "run_image_files_restore"]
