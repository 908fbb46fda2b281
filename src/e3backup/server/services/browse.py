"""A files snapshot read lazily for the dashboard: one directory, a search, a preview, a file.

Only the trees on the way to the asked path are loaded (one blob each), so the first listing of
a snapshot of any size costs its root tree plus the index. Names a hostile tree could use to
escape or confuse (empty, ``.``, ``..``, with ``/`` or NUL) are never shown, searched, previewed
or downloaded: such nodes are left out, as the FUSE mount leaves them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from e3backup.mount.tree import safe_name
from e3backup.repo.blob import BlobType
from e3backup.repo.node import Node
from e3backup.repo.repository import Repository
from e3backup.server.errors import FieldError, NotFound

PREVIEW_BYTES = 64 * 1024
SEARCH_LIMIT = 200
SEARCH_MAX_NODES = 2_000_000


@dataclass(frozen=True)
class Item:
    """One entry of a listing (``path`` from the snapshot's root, ``/``-separated, no leading ``/``)."""

    name: str
    path: str
    type: str
    size: int
    mtime_ns: int


def name_of(node: Node) -> str:
    return node.name.decode("utf-8", "surrogateescape")


def split(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    for p in parts:
        if not safe_name(p) or p == ".":
            raise FieldError("path", f"invalid path component {p!r}")
    return parts


def node_at(repo: Repository, root: bytes, path: str) -> Node | None:
    """The node at ``path`` (None: the root itself); ``NotFound`` when there is none."""
    nodes = repo.load_tree(root)
    node: Node | None = None
    parts = split(path)
    for i, part in enumerate(parts):
        node = next((n for n in nodes if n.name == part.encode("utf-8", "surrogateescape")), None)
        if node is None:
            raise NotFound(f"/{'/'.join(parts[: i + 1])} is not in this snapshot")
        if i < len(parts) - 1:
            if node.type != "dir" or node.subtree is None:
                raise NotFound(f"/{'/'.join(parts[: i + 1])} is not a folder")
            nodes = repo.load_tree(node.subtree)
    return node


def children(repo: Repository, root: bytes, path: str) -> list[Node]:
    node = node_at(repo, root, path)
    if node is None:
        return [n for n in repo.load_tree(root) if safe_name(n.name)]
    if node.type != "dir":
        raise FieldError("path", f"/{path.strip('/')} is a file, not a folder")
    return [n for n in repo.load_tree(node.subtree) if safe_name(n.name)] if node.subtree else []


def item(parent: str, node: Node) -> Item:
    name = name_of(node)
    return Item(name, f"{parent.strip('/')}/{name}".lstrip("/"), node.type,
                node.size if node.type == "file" else 0, node.mtime)


def list_dir(repo: Repository, root: bytes, path: str) -> list[Item]:
    """Folders first, then files, by name."""
    items = [item(path, n) for n in children(repo, root, path)]
    return sorted(items, key=lambda i: (i.type != "dir", i.name.lower(), i.name))


def walk(repo: Repository, tree: bytes, prefix: str = "") -> Iterator[tuple[str, Node]]:
    """Every safely named node below ``tree``, depth first, with its path."""
    for node in repo.load_tree(tree):
        if not safe_name(node.name):
            continue
        path = f"{prefix}/{name_of(node)}".lstrip("/")
        yield path, node
        if node.type == "dir" and node.subtree is not None:
            yield from walk(repo, node.subtree, path)


def search(repo: Repository, root: bytes, term: str, limit: int = SEARCH_LIMIT) -> tuple[list[Item], bool]:
    """Entries whose name contains ``term`` (case-insensitive); True when cut at ``limit``."""
    term = term.strip().lower()
    if not term:
        raise FieldError("q", "give part of a name to search for")
    found: list[Item] = []
    for seen, (path, node) in enumerate(walk(repo, root)):
        if seen >= SEARCH_MAX_NODES:
            return found, True
        if term in name_of(node).lower():
            found.append(item(path.rsplit("/", 1)[0] if "/" in path else "", node))
            if len(found) >= limit:
                return found, True
    return found, False


def file_node(repo: Repository, root: bytes, path: str) -> Node:
    node = node_at(repo, root, path)
    if node is None or node.type != "file":
        raise FieldError("path", f"/{path.strip('/')} is not a file")
    return node


def file_chunks(repo: Repository, node: Node) -> Iterator[bytes]:
    """The file's bytes, one data blob at a time (never the whole file in memory)."""
    for blob_id in node.content or []:
        yield repo.load_blob(BlobType.DATA, blob_id)


def preview(repo: Repository, root: bytes, path: str, limit: int = PREVIEW_BYTES) -> tuple[str | None, bool]:
    """The start of a text file (None: not text); True when the file is longer than shown."""
    node = file_node(repo, root, path)
    data = b""
    for chunk in file_chunks(repo, node):
        data += chunk
        if len(data) >= limit:
            break
    head = data[:limit]
    if b"\0" in head:
        return None, False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not only a character cut at the end
            return None, False
        text = head[: e.start].decode("utf-8")
    return text, node.size > limit


__all__ = ["Item", "children", "file_chunks", "file_node", "list_dir", "node_at", "preview", "search", "walk"]
