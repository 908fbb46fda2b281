"""The ``disk_image`` engine: a block device or image file into one snapshot (fixed chunk grid).

options.py   ImageBackupOptions: typed (readers, chunk size, strict reads, stall interval...)
chunker.py   the fixed grid, planned pieces per chunk, the all-zero blobs
reader.py    pooled buffers; one chunk read (planned bytes) under the read-error policy
saver.py     zero check, SHA-256, dedup lookup, blob writer
pipeline.py  dispatcher -> readers -> savers over bounded queues; one stop event
progress.py  event sink and stall detection (STALLED before the tail, FINALIZING_* in it)
backup.py    run_image_backup: lock, snapshot provider, plan, decisions, pipeline, snapshot
result.py    ImageBackupResult and its summary JSON

The stored image (layout.json, tree, tags, zero blobs) is ``sources.stored_image``.
"""

from typing import TYPE_CHECKING

from .options import DEFAULT_CHUNK_SIZE, MAX_PARALLEL, ImageBackupOptions, parse_size
from .progress import StallDetector
from .result import ImageBackupResult

if TYPE_CHECKING:
    from .backup import run_image_backup


def __getattr__(name: str) -> object:
    """``run_image_backup`` is imported when first used: the options import without numpy and the
    sources, so the CLI checks its flags first and imports the rest while scrypt runs."""
    if name == "run_image_backup":
        from .backup import run_image_backup

        return run_image_backup
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_PARALLEL",
    "ImageBackupOptions",
    "ImageBackupResult",
    "StallDetector",
    "parse_size",
    "run_image_backup",
]
