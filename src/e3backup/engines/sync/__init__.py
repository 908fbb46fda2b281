"""The ``sync`` engine: a one-way mirror of folders as plain files in a bucket or a folder.

Unlike the other engines it writes no repository: the files land as they are (readable by any
S3 tool), so there are no snapshots and no history. Why it is Python on our S3 store rather
than a driven rclone: ``docs/sync.md``.

options.py       SyncOptions, Compare, the S3 and local targets
source.py        the walk: keys, sizes, modification times; excludes; protected parts
target.py        the destination protocol; reading a source file (FileError)
s3_target.py     a bucket: rclone's mtime metadata, judging, PUT / parallel multipart (on store.s3_objects)
state.py         the local cache of what was uploaded (no HEAD per unchanged file)
local_target.py  a folder: temp file + rename, modification times kept
plan.py          new / changed / unchanged / delete, and the max_delete guard (pure)
run.py           run_sync: the order of things, transfers, cancel, events
result.py        SyncResult and its summary
"""

from .options import DEFAULT_MAX_DELETE_PERCENT, Compare, LocalTarget, S3Target, SyncOptions
from .result import SyncResult
from .run import SourceMissing, SyncFailed, run_sync
from .target import FileError

__all__ = [
    "DEFAULT_MAX_DELETE_PERCENT",
    "Compare",
    "FileError",
    "LocalTarget",
    "S3Target",
    "SourceMissing",
    "SyncFailed",
    "SyncOptions",
    "SyncResult",
    "run_sync",
]
