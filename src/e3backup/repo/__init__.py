"""The restic v2 repository format: crypto, keys, packs, index, trees, snapshots, locks, check."""

from .blob import BlobType
from .crypto import Key
from .keys import KDFParams
from .lock import Lock, LockInfo
from .master_index import BlobLocation, MasterIndex
from .node import Node
from .pack import PackedBlob, PackWriter
from .repository import Repository
from .snapshot import Snapshot
from .writer import BlobWriter

__all__ = [
    "BlobLocation",
    "BlobType",
    "BlobWriter",
    "KDFParams",
    "Key",
    "Lock",
    "LockInfo",
    "MasterIndex",
    "Node",
    "PackWriter",
    "PackedBlob",
    "Repository",
    "Snapshot",
]
