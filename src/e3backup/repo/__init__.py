"""The restic v2 repository format: crypto, keys, packs, index, trees, snapshots, locks, check.

The in-memory index (``MasterIndex``, numpy) is imported on first use, not here: see
``Repository.__init__``.
"""

from typing import TYPE_CHECKING

from .blob import BlobType
from .crypto import Key
from .keys import KDFParams
from .lock import Lock, LockInfo
from .node import Node
from .pack import PackedBlob, PackWriter
from .repository import Repository
from .snapshot import Snapshot
from .writer import BlobWriter

if TYPE_CHECKING:
    from .master_index import BlobLocation, MasterIndex


def __getattr__(name: str) -> object:
    if name in ("BlobLocation", "MasterIndex"):
        from . import master_index

        return getattr(master_index, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
