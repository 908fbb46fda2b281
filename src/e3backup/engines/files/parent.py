"""The parent snapshot's trees, kept as parsed JSON rather than ``Node`` objects.

An unchanged backup looks at every entry of every parent tree, but needs only a few fields of
each (type, size, inode, device, mtime, ctime, content). Building a full ``Node`` per entry
(three time parses, hex IDs, a dataclass) was most of an unchanged backup's time, so entries stay
raw dicts: files are compared field by field with ``lstat``, and a ``Node`` is built only for an
entry that must be compared whole (directories, symlinks, ...) or re-encoded in a changed tree.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from ...errors import E3Error, IntegrityError
from ...repo.blob import BlobType
from ...repo.master_index import MasterIndex
from ...repo.names import unquote
from ...repo.node import Node
from ...repo.repository import Repository
from ...repo.timefmt import format_ns, parse_ns

Raw = dict[str, Any]


class ParentTree:
    """One parent tree: its ID, its raw entries by name, and how many nodes it holds."""

    __slots__ = ("count", "entries", "tree_id")

    def __init__(self, tree_id: bytes, raw: list[Raw]) -> None:
        self.tree_id = tree_id
        self.count = len(raw)  # duplicate names (never written by us or restic) then never match
        self.entries: dict[bytes, Raw] = {unquote(d["name"]): d for d in raw}

    def same_node(self, node: Node) -> bool:
        """The parent holds exactly this node under its name."""
        d = self.entries.get(node.name)
        return d is not None and to_node(d) == node


def load_parent(repo: Repository, tree_id: bytes) -> ParentTree | None:
    """The parent tree, or None when it cannot be read (that only costs a full read)."""
    try:
        doc = json.loads(repo.load_blob(BlobType.TREE, tree_id))
        return ParentTree(tree_id, doc["nodes"] or [])
    except (E3Error, ValueError, KeyError, TypeError, AttributeError):
        return None


def subtree_of(d: Raw | None) -> bytes | None:
    """The tree ID of a parent entry that was a directory."""
    if d is None or d.get("type") != "dir":
        return None
    try:
        return bytes.fromhex(d["subtree"])
    except (KeyError, TypeError, ValueError):
        return None


def to_node(d: Raw) -> Node | None:
    """The ``Node`` of a raw entry, or None if it does not decode."""
    try:
        return Node.from_json(d)
    except IntegrityError:
        return None


def _same_time(stored: object, ns: int) -> bool:
    if stored == format_ns(ns):
        return True
    # another writer's form of the same instant (restic writes local time with an offset)
    try:
        return isinstance(stored, str) and parse_ns(stored) == ns
    except IntegrityError:
        return False


def reusable_content(d: Raw, st: os.stat_result, index: MasterIndex) -> list[bytes] | None:
    """The parent entry's content IDs if the file is unchanged: same inode, size, mtime and
    ctime, and every content blob indexed; else None.

    Every change of content, mode, owner, link count or xattrs moves ctime, so when the device
    is the same too, the parent's whole entry can be reused without reading xattrs or names.
    """
    if d.get("type") != "file" or not stat.S_ISREG(st.st_mode):
        return None
    content = d.get("content")
    if (
        content is None
        or d.get("size", 0) != st.st_size
        or d.get("inode", 0) != st.st_ino
        or not _same_time(d.get("mtime"), st.st_mtime_ns)
        or not _same_time(d.get("ctime"), st.st_ctime_ns)
    ):
        return None
    try:
        ids = [bytes.fromhex(c) for c in content]
    except (TypeError, ValueError):
        return None
    has = index.has
    data = BlobType.DATA
    for i in ids:
        if not has(data, i):
            return None
    return ids


__all__ = ["ParentTree", "Raw", "load_parent", "reusable_content", "subtree_of", "to_node"]
