"""The mounted repository as a tree of entries, built lazily (pure: no FUSE here).

    /ids/<short id>/...            every snapshot by ID
    /snapshots/<time>/...          by time (+ ``latest`` -> the newest)
    /hosts/<host>/<time>/...       by host (+ ``latest``)
    /tags/<tag>/<time>/...         by tag (+ ``latest``)

A file snapshot shows its tree: sizes, modes and times from the nodes, content read through
blob lookups. An image snapshot shows ``<name>.img`` (the whole disk), ``layout.json`` and
``partitions/<index>-<name or type>.img``, each a window onto the disk at the partition's offset,
so ``mount -o loop,ro`` of a partition file gives file-level restore from an image backup.

Names a hostile tree could use to escape or confuse (``.``, ``..``, empty, with ``/`` or NUL) are
never exposed: such nodes are left out.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import E3Error
from ..repo.node import Node, unix_perm
from ..repo.repository import Repository
from ..repo.snapshot import Snapshot
from ..sources.stored_image import ImageSnapshot, is_image_snapshot, load_image_snapshot
from .blobcache import BlobCache
from .content import Content, FileContent, ImageContent, Window

log = logging.getLogger(__name__)

_TYPE_BITS = {
    "dir": stat.S_IFDIR,
    "file": stat.S_IFREG,
    "symlink": stat.S_IFLNK,
    "dev": stat.S_IFBLK,
    "chardev": stat.S_IFCHR,
    "fifo": stat.S_IFIFO,
    "socket": stat.S_IFSOCK,
}


@dataclass
class Entry:
    """One file, directory or symlink of the mount."""

    kind: str
    mode: int  # full st_mode
    size: int = 0
    mtime: int = 0
    atime: int = 0
    ctime: int = 0
    uid: int = 0
    gid: int = 0
    rdev: int = 0
    link_target: bytes = b""
    load_children: Callable[[], dict[str, Entry]] | None = None
    open_content: Callable[[], Content] | None = None
    _children: dict[str, Entry] | None = field(default=None, repr=False)
    _mu: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def children(self) -> dict[str, Entry]:
        if self.kind != "dir":
            raise NotADirectoryError
        with self._mu:
            if self._children is None:
                self._children = self.load_children() if self.load_children else {}
            return self._children

    def attrs(self) -> dict[str, int]:
        nlink = 2 if self.kind == "dir" else 1
        return {
            "st_mode": self.mode,
            "st_nlink": nlink,
            "st_size": self.size,
            "st_mtime": self.mtime,
            "st_atime": self.atime or self.mtime,
            "st_ctime": self.ctime or self.mtime,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_rdev": self.rdev,
        }


def safe_name(name: bytes | str) -> bool:
    """A name that stays one path component inside its directory."""
    b = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
    return bool(b) and b not in (b".", b"..") and b"/" not in b and b"\0" not in b


def _label(text: str) -> str:
    """A directory name from a host, tag or partition name: no slashes, no dot-only names."""
    out = re.sub(r"[/\x00]", "_", text) or "_"
    return out if safe_name(out) else "_" + out


def virtual_dir(children: Callable[[], dict[str, Entry]], mtime: int = 0) -> Entry:
    return Entry("dir", stat.S_IFDIR | 0o555, mtime=mtime, load_children=children)


class RepositoryTree:
    """The root entry of a mounted repository and everything below it."""

    def __init__(self, repo: Repository, snapshots: list[Snapshot], cache: BlobCache) -> None:
        self.repo = repo
        self.cache = cache
        self.snapshots = sorted(snapshots, key=lambda s: (s.time, s.id))
        self._roots = {s.id: self._snapshot_root(s) for s in self.snapshots}
        newest = self.snapshots[-1].time if self.snapshots else 0
        self.root = virtual_dir(self._top, newest)

    # -- the top levels --------------------------------------------------------------------------

    def _top(self) -> dict[str, Entry]:
        hosts = sorted({s.hostname for s in self.snapshots})
        tags = sorted({t for s in self.snapshots for t in s.tags})
        return {
            "ids": virtual_dir(lambda: {s.short_id: self._roots[s.id] for s in self.snapshots}),
            "snapshots": virtual_dir(lambda: self._by_time(self.snapshots)),
            "hosts": virtual_dir(
                lambda: {
                    _label(h): virtual_dir(functools.partial(self._of_host, h))
                    for h in hosts
                }
            ),
            "tags": virtual_dir(
                lambda: {
                    _label(t): virtual_dir(functools.partial(self._with_tag, t))
                    for t in tags
                }
            ),
        }

    def _of_host(self, host: str) -> dict[str, Entry]:
        return self._by_time([s for s in self.snapshots if s.hostname == host])

    def _with_tag(self, tag: str) -> dict[str, Entry]:
        return self._by_time([s for s in self.snapshots if tag in s.tags])

    def _by_time(self, snaps: list[Snapshot]) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        last = ""
        for s in snaps:
            name = dt.datetime.fromtimestamp(s.time / 1e9).astimezone().isoformat(timespec="seconds")
            base, n = name, 0
            while name in out:
                n += 1
                name = f"{base}-{n}"
            out[name] = self._roots[s.id]
            last = name
        if last:
            out["latest"] = Entry("symlink", stat.S_IFLNK | 0o777, size=len(last), link_target=last.encode())
        return out

    # -- one snapshot ----------------------------------------------------------------------------

    def _snapshot_root(self, snap: Snapshot) -> Entry:
        def children() -> dict[str, Entry]:
            nodes = self.repo.load_tree(snap.tree)
            if is_image_snapshot(snap):
                try:
                    return self._image_children(load_image_snapshot(self.repo, snap, nodes))
                except E3Error as e:
                    log.warning("snapshot %s: showing its tree: %s", snap.short_id, e)
            return self._node_children(nodes)

        return virtual_dir(children, snap.time)

    def _node_children(self, nodes: list[Node]) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        for node in nodes:
            if not safe_name(node.name):
                log.warning("not exposing a node with an unsafe name: %r", node.name)
                continue
            out[node.name.decode("utf-8", "surrogateescape")] = self._node_entry(node)
        return out

    def _node_entry(self, node: Node) -> Entry:
        kind = node.type if node.type in _TYPE_BITS else "file"
        e = Entry(
            kind if kind in ("dir", "file", "symlink") else "other",
            _TYPE_BITS[kind] | unix_perm(node.mode),
            size=node.size if node.type == "file" else 0,
            mtime=node.mtime,
            atime=node.atime,
            ctime=node.ctime,
            uid=node.uid,
            gid=node.gid,
            rdev=node.device if node.type in ("dev", "chardev") else 0,
        )
        if node.type == "dir":
            subtree = node.subtree
            e.load_children = lambda: self._node_children(self.repo.load_tree(subtree)) if subtree else {}
        elif node.type == "file":
            content, size = list(node.content or []), node.size
            e.open_content = lambda: FileContent(content, size, self.repo.index, self.cache)
        elif node.type == "symlink":
            e.link_target = node.linktarget or b""
            e.size = len(e.link_target)
        return e

    def _image_children(self, img: ImageSnapshot) -> dict[str, Entry]:
        disk = ImageContent(img.content, img.device_size, img.chunk_size, img.zero_ids(), self.cache)
        t = img.snapshot.time

        def file(content: Content, mode: int = 0o444) -> Entry:
            return Entry("file", stat.S_IFREG | mode, size=content.size, mtime=t, open_content=lambda: content)

        layout = _Bytes(img.layout_json)
        parts: dict[str, Entry] = {}
        for p in img.layout.partitions:
            label = _label(p.name or (p.type_name if p.type_name != "unknown" else p.type) or "partition")
            parts[f"{p.index}-{label}.img"] = file(Window(disk, p.start, p.size))
        out = {img.file_name: file(disk), "layout.json": file(layout)}
        if parts:
            out["partitions"] = virtual_dir(lambda: parts, t)
        return {k: v for k, v in out.items() if safe_name(k)}


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


def resolve(root: Entry, path: str) -> Entry:
    """The entry at ``path`` (``/a/b``); ``FileNotFoundError`` / ``NotADirectoryError`` else."""
    entry = root
    for part in path.split("/"):
        if not part:
            continue
        if entry.kind != "dir":
            raise NotADirectoryError(path)
        child = entry.children().get(part)
        if child is None:
            raise FileNotFoundError(path)
        entry = child
    return entry


__all__ = ["Entry", "RepositoryTree", "resolve", "safe_name"]
