"""How a disk image sits in a snapshot, and how the next run finds and reads its parent.

The root tree holds two files, as ``restic backup --stdin`` would (spec 7.8):
- ``<source base name>.img``: the whole device, ``size`` = device size, ``content`` = the grid's
  blob IDs in order (all-zero chunks share the one zero blob), so ``restic dump`` gives the disk;
- ``layout.json``: the ``DiskLayout`` (partitions, file systems, plan statistics) plus an
  ``image`` section with the chunk size, the image file's name, the full read plan and the spans
  stored as zeros after read errors. The next incremental builds its ``ParentImage`` from it.
Tags: ``engine:disk_image``, ``source:<path>``, ``type:full|incremental``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from ...errors import E3Error
from ...repo.blob import BlobType
from ...repo.node import Node
from ...repo.repository import Repository
from ...repo.snapshot import Snapshot
from ...sources.changemap import ParentImage
from ...sources.extents import ExtentList
from ...sources.layout.model import DiskLayout
from ...sources.plan import ReadPlan

ENGINE_TAG = "engine:disk_image"
LAYOUT_NAME = "layout.json"
IMAGE_MODE = 0o600
LAYOUT_BLOB_SIZE = 4 << 20


def source_tag(source: str) -> str:
    return f"source:{source}"


def image_name(source: str) -> str:
    """``/dev/sda`` -> ``sda.img``; ``/srv/vm/disk.img`` -> ``disk.img``."""
    base = os.path.basename(os.path.normpath(source)) or "disk"
    return base if base.endswith(".img") else base + ".img"


def layout_document(
    layout: DiskLayout, plan: ReadPlan, chunk_size: int, file_name: str, recovered: ExtentList
) -> bytes:
    doc = layout.with_plan(plan.stats()).to_json()
    doc["image"] = {
        "file": file_name,
        "device_size": plan.device_size,
        "chunk_size": chunk_size,
        "read_plan": plan.to_json(),
        "recovered": recovered.to_pairs(),
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def file_node(name: str, size: int, content: list[bytes], time_ns: int) -> Node:
    return Node(
        name=name.encode(),
        type="file",
        mode=IMAGE_MODE,
        mtime=time_ns,
        atime=time_ns,
        ctime=time_ns,
        uid=os.getuid(),
        gid=os.getgid(),
        size=size,
        content=content,
    )


@dataclass(frozen=True)
class ParentInfo:
    """A previous image of this source: its snapshot, what it recorded and its blob IDs."""

    snapshot: Snapshot
    image: ParentImage
    content: list[bytes]


def find_parent(repo: Repository, ref: str | None, host: str, source: str) -> Snapshot | None:
    """``ref`` if given, else the latest image snapshot of this host and source."""
    if ref:
        return repo.find_snapshot(ref)
    want = {ENGINE_TAG, source_tag(source)}
    candidates = [s for s in repo.snapshots() if want <= set(s.tags) and s.hostname == host]
    return candidates[-1] if candidates else None


def load_parent(repo: Repository, snap: Snapshot) -> ParentInfo:
    """Read the parent's ``layout.json`` and disk node; ``E3Error`` if it is not a disk image."""
    nodes = {n.name.decode(errors="replace"): n for n in repo.load_tree(snap.tree)}
    meta = nodes.get(LAYOUT_NAME)
    if meta is None or meta.type != "file":
        raise E3Error(f"snapshot {snap.short_id} is not a disk image (no {LAYOUT_NAME})")
    raw = b"".join(repo.load_blob(BlobType.DATA, c) for c in meta.content or [])
    try:
        doc: dict[str, Any] = json.loads(raw)
        img = doc["image"]
        layout = DiskLayout.from_json(doc)
        plan = ReadPlan.from_json(img["read_plan"])
        disk = nodes[img["file"]]
    except (ValueError, KeyError, TypeError) as e:
        raise E3Error(f"snapshot {snap.short_id}: unreadable {LAYOUT_NAME}: {e}") from e
    content = list(disk.content or [])
    size, chunk = int(img["device_size"]), int(img["chunk_size"])
    if disk.size != size or len(content) != -(-size // chunk):
        raise E3Error(f"snapshot {snap.short_id}: disk node does not match its chunk grid")
    return ParentInfo(snap, ParentImage(size, chunk, plan.extents, layout), content)


def layout_content(data: bytes) -> list[memoryview]:
    view = memoryview(data)
    return [view[i : i + LAYOUT_BLOB_SIZE] for i in range(0, len(data), LAYOUT_BLOB_SIZE)]


__all__ = [
    "ENGINE_TAG",
    "LAYOUT_NAME",
    "ParentInfo",
    "file_node",
    "find_parent",
    "image_name",
    "layout_content",
    "layout_document",
    "load_parent",
    "source_tag",
]
