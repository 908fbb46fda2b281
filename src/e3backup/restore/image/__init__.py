"""Restore a disk image snapshot to a raw file, a block device or a VHDX (``image restore``/``export``).

options.py   ImageRestoreOptions (typed: snapshot, target, workers, segment size...), the result
plan.py      the grid cut into segments of whole chunks; every data blob located up front
restorer.py  writing: pack ranges read once, blobs decoded once, written past the page cache
verify.py    re-reading the finished target and checking every chunk
resume.py    WrittenSegments: the segments written, so a stopped restore resumes where it was
workers.py   segment workers, the caller's cancel and this run's stop, first error wins
run.py       run_image_restore (the run contract): lock, snapshot, restore, cancel

The stored format itself is read by ``sources.stored_image``.
"""

from .options import DEFAULT_SEGMENT_MB, DEFAULT_WORKERS, MAX_WORKERS, ImageRestoreOptions, ImageRestoreResult, MiB
from .plan import RestorePlan, Segment, plan_restore
from .restorer import Decoded, ImageRestorer
from .resume import WrittenSegments
from .run import run_image_restore

__all__ = [
    "DEFAULT_SEGMENT_MB",
    "DEFAULT_WORKERS",
    "MAX_WORKERS",
    "Decoded",
    "ImageRestoreOptions",
    "ImageRestoreResult",
    "ImageRestorer",
    "MiB",
    "RestorePlan",
    "Segment",
    "WrittenSegments",
    "plan_restore",
    "run_image_restore",
]
