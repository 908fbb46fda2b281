"""What an image restore, export or mount needs from a disk image snapshot (``docs/disk-image.md``).

The root tree holds ``<name>.img`` (size = device size, one blob ID per grid chunk) and
``layout.json`` (the DiskLayout, chunk size and full read plan). Anything else is not an image
snapshot and is refused with an error that says so.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..errors import E3Error
from ..repo.blob import BlobType
from ..repo.node import Node
from ..repo.repository import Repository
from ..repo.snapshot import Snapshot
from ..sources.extents import ExtentList
from ..sources.layout.model import DiskLayout

ENGINE_TAG = "engine:disk_image"
LAYOUT_NAME = "layout.json"


class NotAnImageError(E3Error):
    """The snapshot is not a disk image snapshot (a file backup, or damaged)."""


@dataclass(frozen=True)
class ImageSnapshot:
    """One disk image in a snapshot: its grid of blob IDs, layout and read plan."""

    snapshot: Snapshot
    file_name: str
    disk_node: Node
    layout_node: Node
    layout_json: bytes
    layout: DiskLayout
    device_size: int
    chunk_size: int
    content: list[bytes]
    plan: ExtentList

    @property
    def chunk_count(self) -> int:
        return len(self.content)

    def chunk_span(self, index: int) -> tuple[int, int]:
        """(offset, length) of grid chunk ``index``; the last one may be short."""
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.device_size - offset)

    def zero_ids(self) -> frozenset[bytes]:
        """IDs of the all-zero blobs of the grid's lengths (full chunk, short last chunk)."""
        lengths = {self.chunk_size, self.device_size - (self.chunk_count - 1) * self.chunk_size}
        return frozenset(hashlib.sha256(bytes(n)).digest() for n in lengths if n > 0)


def is_image_snapshot(snap: Snapshot) -> bool:
    return ENGINE_TAG in snap.tags


def load_image_snapshot(repo: Repository, snap: Snapshot, nodes: list[Node] | None = None) -> ImageSnapshot:
    """Read the snapshot's ``layout.json`` and disk node; ``NotAnImageError`` if it is not one."""
    if nodes is None:
        nodes = repo.load_tree(snap.tree)
    by_name = {n.name.decode(errors="replace"): n for n in nodes}
    meta = by_name.get(LAYOUT_NAME)
    if meta is None or meta.type != "file":
        tags = ", ".join(snap.tags) or "none"
        raise NotAnImageError(f"snapshot {snap.short_id} is not a disk image snapshot (no {LAYOUT_NAME}; tags: {tags})")
    raw = b"".join(repo.load_blob(BlobType.DATA, c) for c in meta.content or [])
    try:
        doc: dict[str, Any] = json.loads(raw)
        img = doc["image"]
        layout = DiskLayout.from_json(doc)
        plan = ExtentList((int(o), int(n)) for o, n in img["read_plan"]["extents"])
        name = str(img["file"])
        disk = by_name[name]
        size, chunk = int(img["device_size"]), int(img["chunk_size"])
    except (ValueError, KeyError, TypeError) as e:
        raise NotAnImageError(f"snapshot {snap.short_id}: unreadable {LAYOUT_NAME}: {e}") from e
    content = list(disk.content or [])
    if disk.type != "file" or disk.size != size or chunk <= 0 or len(content) != -(-size // chunk):
        raise NotAnImageError(f"snapshot {snap.short_id}: disk node {name} does not match its chunk grid")
    return ImageSnapshot(snap, name, disk, meta, raw, layout, size, chunk, content, plan)


__all__ = ["ENGINE_TAG", "LAYOUT_NAME", "ImageSnapshot", "NotAnImageError", "is_image_snapshot", "load_image_snapshot"]
