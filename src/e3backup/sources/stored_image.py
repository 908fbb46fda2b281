"""The stored disk image: how one image sits in a repository snapshot (``docs/disk-image.md``).

One module for the format, written by the image backup and read by the restore, the export,
the mount and the next incremental (as PBS keeps ``fixed_index.rs`` together). The snapshot's
root tree holds, as ``restic backup --stdin`` would (spec 7.8):

- ``<source base name>.img``: the whole device; ``size`` = device size, ``content`` = one blob ID
  per chunk of a fixed grid, in order (every all-zero chunk names the one all-zero blob of its
  length), so ``restic dump`` gives back the disk;
- ``layout.json`` (the *image document*): the ``DiskLayout`` (partitions, file systems, plan
  statistics) plus an ``image`` section: ``file``, ``device_size``, ``chunk_size``, the full
  ``read_plan``, the spans stored as zeros after read errors (``recovered``) and, optionally,
  ``tracking``: a map from a key (``disk``, ``p1`` ...) to another file of the root tree holding
  that key's change-tracking data (opaque bytes here, issue #17), read and written only here;
- the tracking files, if any.

Tags: ``engine:disk_image``, ``source:<path>``, ``type:full|incremental``. Anything that does not
parse as above is refused with ``NotAnImageError`` (one validation for every reader).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from e3backup.errors import E3Error
from e3backup.repo.blob import BlobType
from e3backup.repo.node import Node
from e3backup.repo.repository import Repository, warn_unreadable_snapshot
from e3backup.repo.snapshot import Snapshot
from e3backup.repo.snapshot_filter import SnapshotFilter
from e3backup.repo.writer import BlobWriter
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.model import DiskLayout
from e3backup.sources.plan import ReadPlan

from ..platform.compat import owner_ids

ENGINE_TAG = "engine:disk_image"
LAYOUT_NAME = "layout.json"
FULL_TAG = "type:full"
INCREMENTAL_TAG = "type:incremental"
IMAGE_MODE = 0o600
FILE_BLOB_SIZE = 4 << 20
"""layout.json and tracking files are stored in blobs of at most this size."""
TRACKING_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class NotAnImageError(E3Error):
    """The snapshot is not a disk image snapshot (a file backup, or damaged)."""


# -- names and tags ----------------------------------------------------------------------------


def source_tag(source: str) -> str:
    return f"source:{source}"


def image_name(source: str) -> str:
    """``/dev/sda`` -> ``sda.img``; ``/srv/vm/disk.img`` -> ``disk.img``; Windows names too:
    ``C:`` -> ``C.img``, ``\\\\.\\PhysicalDrive0`` -> ``PhysicalDrive0.img``."""
    base = re.split(r"[\\/]", source.rstrip("\\/"))[-1].replace(":", "") or "disk"
    return base if base.endswith(".img") else base + ".img"


def tracking_name(key: str) -> str:
    """The root-tree file holding change-tracking data ``key`` (``p1`` -> ``tracking-p1.bin``)."""
    if not TRACKING_KEY.fullmatch(key):
        raise ValueError(f"invalid tracking key {key!r} (letters, digits, '_', '.', '-')")
    return f"tracking-{key}.bin"


def is_image_snapshot(snap: Snapshot) -> bool:
    return ENGINE_TAG in snap.tags


# -- the all-zero blobs ------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def zero_blob_id(length: int) -> bytes:
    """ID of the all-zero blob of ``length`` bytes (computed once per length and process)."""
    return hashlib.sha256(bytes(length)).digest()


def grid_lengths(device_size: int, chunk_size: int) -> frozenset[int]:
    """The chunk lengths of a grid: the full chunk and the short last one (if any)."""
    count = -(-device_size // chunk_size)
    return frozenset(n for n in (chunk_size, device_size - (count - 1) * chunk_size) if n > 0 and count)


def zero_blob_ids(device_size: int, chunk_size: int) -> dict[int, bytes]:
    """``{chunk length: all-zero blob ID}`` for the grid's lengths."""
    return {n: zero_blob_id(n) for n in grid_lengths(device_size, chunk_size)}


# -- the image document (layout.json) ------------------------------------------------------------


@dataclass(frozen=True)
class ParentImage:
    """What an image recorded of its device: the geometry change tracking compares against."""

    device_size: int
    chunk_size: int
    plan: ExtentList
    layout: DiskLayout | None = None


@dataclass(frozen=True)
class ImageDocument:
    """``layout.json``: the disk layout and the ``image`` section (see the module docstring)."""

    layout: DiskLayout
    file_name: str
    device_size: int
    chunk_size: int
    read_plan: ReadPlan
    recovered: ExtentList = field(default_factory=ExtentList)
    tracking: Mapping[str, str] = field(default_factory=dict)
    """Tracking key -> the root-tree file name holding its data."""

    @property
    def chunk_count(self) -> int:
        return -(-self.device_size // self.chunk_size)

    def to_json(self) -> dict[str, Any]:
        doc = self.layout.with_plan(self.read_plan.stats()).to_json()
        image: dict[str, Any] = {
            "file": self.file_name,
            "device_size": self.device_size,
            "chunk_size": self.chunk_size,
            "read_plan": self.read_plan.to_json(),
            "recovered": self.recovered.to_pairs(),
        }
        if self.tracking:
            image["tracking"] = dict(sorted(self.tracking.items()))
        doc["image"] = image
        return doc

    def encode(self) -> bytes:
        return (json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes, where: str) -> ImageDocument:
        """Parse and check ``layout.json``; ``NotAnImageError`` names ``where`` and the problem."""
        try:
            doc: dict[str, Any] = json.loads(raw)
            img = doc["image"]
            tracking = {str(k): str(v) for k, v in (img.get("tracking") or {}).items()}
            out = cls(
                layout=DiskLayout.from_json(doc),
                file_name=str(img["file"]),
                device_size=int(img["device_size"]),
                chunk_size=int(img["chunk_size"]),
                read_plan=ReadPlan.from_json(img["read_plan"]),
                recovered=ExtentList((int(o), int(n)) for o, n in img.get("recovered") or []),
                tracking=tracking,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise NotAnImageError(f"{where}: unreadable {LAYOUT_NAME}: {e}") from e
        if out.chunk_size <= 0 or out.device_size < 0:
            raise NotAnImageError(f"{where}: {LAYOUT_NAME} has chunk size {out.chunk_size}, size {out.device_size}")
        bad = [k for k, v in tracking.items() if not TRACKING_KEY.fullmatch(k) or v != tracking_name(k)]
        if bad:
            raise NotAnImageError(f"{where}: {LAYOUT_NAME} names invalid tracking files {bad}")
        return out


# -- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSnapshot:
    """One disk image in a snapshot: its document, its grid of blob IDs and its tree nodes."""

    snapshot: Snapshot
    document: ImageDocument
    disk_node: Node
    layout_node: Node
    layout_json: bytes
    content: list[bytes]
    tracking_nodes: Mapping[str, Node] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        return self.document.file_name

    @property
    def layout(self) -> DiskLayout:
        return self.document.layout

    @property
    def device_size(self) -> int:
        return self.document.device_size

    @property
    def chunk_size(self) -> int:
        return self.document.chunk_size

    @property
    def plan(self) -> ExtentList:
        """The bytes the backup planned to read; everything else is known zero."""
        return self.document.read_plan.extents

    @property
    def chunk_count(self) -> int:
        return len(self.content)

    @property
    def parent(self) -> ParentImage:
        """This image as the parent of the next incremental."""
        return ParentImage(self.device_size, self.chunk_size, self.plan, self.layout)

    def chunk_span(self, index: int) -> tuple[int, int]:
        """(offset, length) of grid chunk ``index``; the last one may be short."""
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.device_size - offset)

    def zero_ids(self) -> frozenset[bytes]:
        """IDs of the all-zero blobs of the grid's lengths (full chunk, short last chunk)."""
        return frozenset(zero_blob_ids(self.device_size, self.chunk_size).values())

    def tracking_keys(self) -> list[str]:
        return sorted(self.tracking_nodes)

    def load_tracking(self, repo: Repository, key: str) -> bytes | None:
        """The change-tracking data stored under ``key``, or None if this image has none."""
        node = self.tracking_nodes.get(key)
        return None if node is None else _load_file(repo, node)


def load_image_snapshot(repo: Repository, snap: Snapshot, nodes: list[Node] | None = None) -> ImageSnapshot:
    """Read the snapshot's ``layout.json`` and disk node; ``NotAnImageError`` if it is not one."""
    if nodes is None:
        nodes = repo.load_tree(snap.tree)
    by_name = {n.name.decode(errors="replace"): n for n in nodes}
    meta = by_name.get(LAYOUT_NAME)
    where = f"snapshot {snap.short_id}"
    if meta is None or meta.type != "file":
        tags = ", ".join(snap.tags) or "none"
        raise NotAnImageError(f"{where} is not a disk image snapshot (no {LAYOUT_NAME}; tags: {tags})")
    raw = _load_file(repo, meta)
    doc = ImageDocument.parse(raw, where)
    disk = by_name.get(doc.file_name)
    content = list(disk.content or []) if disk is not None else []
    if disk is None or disk.type != "file" or disk.size != doc.device_size or len(content) != doc.chunk_count:
        raise NotAnImageError(f"{where}: disk node {doc.file_name} does not match its chunk grid")
    tracking: dict[str, Node] = {}
    for key, name in doc.tracking.items():
        node = by_name.get(name)
        if node is None or node.type != "file":
            raise NotAnImageError(f"{where}: {LAYOUT_NAME} names tracking file {name}, which is not in the tree")
        tracking[key] = node
    return ImageSnapshot(snap, doc, disk, meta, raw, content, tracking)


def find_image_snapshot(repo: Repository, ref: str | None, host: str, source: str) -> Snapshot | None:
    """``ref`` if given, else (or for ``latest``) the latest image snapshot of this host and
    source (a repository shared by several machines must never hand one machine another's
    ``/dev/sda``). An unreadable snapshot file is skipped with a warning."""
    if ref and ref != "latest":
        return repo.find_snapshot(ref)
    want = {ENGINE_TAG, source_tag(source)}
    snaps = repo.snapshots(on_error=warn_unreadable_snapshot)
    candidates = [s for s in snaps if want <= set(s.tags) and s.hostname == host]
    return candidates[-1] if candidates else None


def image_snapshots(select: SnapshotFilter | None = None) -> SnapshotFilter:
    """``select`` narrowed to image snapshots: what ``latest`` means to an image command."""
    base = select or SnapshotFilter()
    return dataclasses.replace(base, kind=is_image_snapshot, kind_name="image")


def _load_file(repo: Repository, node: Node) -> bytes:
    return b"".join(repo.load_blob(BlobType.DATA, c) for c in node.content or [])


# -- writing ------------------------------------------------------------------------------------


def save_image_tree(
    repo: Repository,
    writer: BlobWriter,
    document: ImageDocument,
    content: Sequence[bytes],
    time_ns: int,
    tracking: Mapping[str, bytes] | None = None,
) -> bytes:
    """Store ``layout.json``, the tracking files and the root tree through ``writer``; returns the
    tree ID. ``tracking`` (key -> data) replaces ``document.tracking``."""
    if len(content) != document.chunk_count:
        raise ValueError(f"{len(content)} blob IDs for a grid of {document.chunk_count} chunks")
    tracking = dict(tracking or {})
    names = {key: tracking_name(key) for key in tracking}
    doc = ImageDocument(
        document.layout,
        document.file_name,
        document.device_size,
        document.chunk_size,
        document.read_plan,
        document.recovered,
        names,
    )
    raw = doc.encode()
    nodes = [
        _file_node(doc.file_name, doc.device_size, list(content), time_ns),
        _file_node(LAYOUT_NAME, len(raw), _save_file(writer, raw), time_ns),
    ]
    for key, data in tracking.items():
        nodes.append(_file_node(names[key], len(data), _save_file(writer, data), time_ns))
    return repo.save_tree(writer, sorted(nodes, key=lambda n: n.name))


def image_tags(source: str, full: bool, extra: Sequence[str] = ()) -> list[str]:
    tags = [ENGINE_TAG, source_tag(source), FULL_TAG if full else INCREMENTAL_TAG]
    return tags + [t for t in extra if t not in tags]


def _save_file(writer: BlobWriter, data: bytes) -> list[bytes]:
    view = memoryview(data)
    return [writer.save(BlobType.DATA, view[i : i + FILE_BLOB_SIZE])[0] for i in range(0, len(data), FILE_BLOB_SIZE)]


def _file_node(name: str, size: int, content: list[bytes], time_ns: int) -> Node:
    return Node(
        name=name.encode(),
        type="file",
        mode=IMAGE_MODE,
        mtime=time_ns,
        atime=time_ns,
        ctime=time_ns,
        uid=owner_ids()[0],
        gid=owner_ids()[1],
        size=size,
        content=content,
    )


__all__ = [
    "ENGINE_TAG",
    "FULL_TAG",
    "INCREMENTAL_TAG",
    "LAYOUT_NAME",
    "ImageDocument",
    "ImageSnapshot",
    "NotAnImageError",
    "ParentImage",
    "find_image_snapshot",
    "grid_lengths",
    "image_name",
    "image_snapshots",
    "image_tags",
    "is_image_snapshot",
    "load_image_snapshot",
    "save_image_tree",
    "source_tag",
    "tracking_name",
    "zero_blob_id",
    "zero_blob_ids",
]
