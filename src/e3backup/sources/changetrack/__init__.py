"""Driverless change tracking for image incrementals, from the file systems' own metadata.

An incremental of a disk where 1 % of the files changed should read about 1 % of it. Without a
kernel driver (the "MFT compare" of Veeam, MSP360 and Macrium) each backup keeps a compact digest
per MFT record (NTFS) or inode (ext2/3/4) with the image snapshot; the next backup digests the
same records again, and reads only the file-system metadata plus the data of the records whose
digest changed. Works on any point-in-time view (LVM/VSS snapshot, loop device, image file).

digest.py   64-bit digests of fixed-size records, vectorised with numpy; the compare
state.py    TrackingState: the stored form (header + 8 bytes per record)
scan.py     FsScan: digests, metadata extents, changed extents of one scan
ntfs.py     MFT scan: records, system files, indexes, runs of changed records
ext4.py     inode-table scan: inodes, metadata blocks, blocks of changed inodes
metachunks.py  per-chunk digests of the metadata: a metadata chunk is read only when it changed
track.py    per partition and per disk: method, reason, change map, the new state
"""

from e3backup.sources.changetrack.metachunks import MetaChunks
from e3backup.sources.changetrack.state import FsDigests, TrackingState, TrackingStateError
from e3backup.sources.changetrack.track import (
    DiskTracking,
    Grid,
    Method,
    PartitionTracking,
    track_disk,
    track_partition,
)

__all__ = [
    "DiskTracking",
    "FsDigests",
    "Grid",
    "MetaChunks",
    "Method",
    "PartitionTracking",
    "TrackingState",
    "TrackingStateError",
    "track_disk",
    "track_partition",
]
