"""``run_image_restore``: the run contract of an image restore or export (``docs/image-restore.md``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from ...errors import Cancelled, E3Error, LockError
from ...events import Event, EventCode
from ...progress import Progress
from ...repo.repository import Repository
from ...sources.stored_image import image_snapshots, load_image_snapshot
from .options import ImageRestoreOptions, ImageRestoreResult
from .restorer import ImageRestorer
from .resume import WrittenSegments


def run_image_restore(
    repo: Repository,
    options: ImageRestoreOptions,
    progress: Progress | None = None,
    on_event: Callable[[Event], None] | None = None,
    cancel: threading.Event | None = None,
    *,
    after_write: Callable[[], None] | None = None,
    written: WrittenSegments | None = None,
) -> ImageRestoreResult:
    """Restore (or export) image snapshot ``options.snapshot`` to ``options.target``.

    A set ``cancel`` stops every worker within a blob: ``Cancelled`` (and ``RUN_CANCELLED`` to
    ``on_event``), a new target file removed, a device left incomplete (the message says which).
    ``after_write`` is a seam for tests, called between writing and verifying. ``written``
    makes the restore resumable: segments in it are skipped, each segment written is added (see
    ``resume.py``; the recovery console runs a restore again after a repository outage).

    Into a new file, the lock's re-check for a competitor that locked at the same moment runs
    while the restore does: a restore only reads the repository and verifies every blob, so such
    a competitor (a prune) can only make it stop early, and then it stops as a failed restore does
    (the new file removed). A target that exists (a device, or a file with ``force``) is not
    touched before the re-check has passed: a refused restore must leave it as it was."""
    cancel = cancel or threading.Event()
    stop = threading.Event()
    conflict: list[LockError] = []

    def on_conflict(e: LockError) -> None:
        conflict.append(e)
        cancel.set()  # the caller sees the restore stopping (and why: the LockError raised)
        stop.set()

    existing = os.path.exists(options.target)
    with repo.lock(meanwhile=repo.load_index) if existing else repo.lock(on_conflict=on_conflict):
        try:
            if not existing:
                repo.load_index()
            snap = repo.find_snapshot(options.snapshot, filter=image_snapshots(options.select))
            img = load_image_snapshot(repo, snap)
            if conflict:
                raise conflict[0]
            return ImageRestorer(repo, options, progress, after_write, cancel, stop, written).run(img)
        except E3Error as e:
            if conflict and conflict[0] is not e:
                raise conflict[0] from e
            if isinstance(e, Cancelled):
                left = "the device is incomplete" if existing else "the partial target was removed"
                message = f"image restore to {options.target} cancelled; {left}"
                if on_event is not None:
                    on_event(Event(EventCode.RUN_CANCELLED, message, details={"target": options.target}))
                raise Cancelled(message) from None
            raise


__all__ = ["run_image_restore"]
