"""What the parts of one files backup share: the repository writer, counters, the first failure.

The walker, the file saver and the tree saver run in different threads and report into one
``BackupState``. A failure (a saver's upload error) or a set cancel event is seen by every part
at its next ``check``: the walk stops, readers skip their remaining files, no snapshot is saved.
"""

from __future__ import annotations

import os
import threading

from ...contract import Cancel, OnEvent, check_cancel
from ...progress import Progress
from ...repo.blob import BlobType
from ...repo.repository import Repository
from ...repo.tree import encode_tree
from ...repo.writer import BlobWriter
from .options import BackupOptions
from .result import BackupResult

CANCELLED = "backup cancelled; no snapshot was saved"


class Tally:
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


class BackupState:
    def __init__(
        self,
        repo: Repository,
        opts: BackupOptions,
        progress: Progress,
        on_event: OnEvent | None,
        cancel: Cancel,
    ) -> None:
        self.repo = repo
        self.opts = opts
        self.progress = progress
        self.on_event = on_event
        self.cancel = cancel
        self.result = BackupResult()
        self.mu = threading.Lock()
        self.failure: BaseException | None = None
        self.data_blobs = 0
        self._writer: BlobWriter | None = None
        self._empty_tree_id: bytes | None = None

    @property
    def writer(self) -> BlobWriter:
        assert self._writer is not None, "the writer is set when the backup starts"
        return self._writer

    @writer.setter
    def writer(self, w: BlobWriter) -> None:
        self._writer = w

    def check(self) -> None:
        """Raise the first failure, or ``Cancelled`` once the cancel event is set."""
        if self.failure is not None:
            raise self.failure
        check_cancel(self.cancel, CANCELLED)

    def fail(self, e: BaseException) -> None:
        with self.mu:
            if self.failure is None:
                self.failure = e

    def error(self, path: bytes, e: OSError) -> None:
        """A file or directory that could not be read: reported, the backup goes on."""
        msg = f"{os.fsdecode(path)}: {e.strerror or e}"
        with self.mu:
            self.result.errors.append(msg)
        self.progress.add_error()

    def add(self, t: Tally) -> None:
        if t.files or t.shown:
            self.progress.add(files=t.files, nbytes=t.shown)
        with self.mu:
            r = self.result
            r.files_new += t.new
            r.files_changed += t.changed
            r.files_unmodified += t.unmodified
            r.total_files_processed += t.files
            r.total_bytes_processed += t.nbytes
            r.bytes_read += t.read
            self.data_blobs += t.blobs

    def empty_tree(self) -> bytes:
        """The ID of the empty tree (a mount point not crossed, a file that became a directory)."""
        if self._empty_tree_id is None:
            self._empty_tree_id, _ = self.writer.save(BlobType.TREE, encode_tree([]))
        return self._empty_tree_id


__all__ = ["CANCELLED", "BackupState", "Tally"]
