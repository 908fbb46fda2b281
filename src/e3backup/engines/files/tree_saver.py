"""Finish directories into tree blobs, in post-order, as their children complete.

The walker pushes each listed directory as a ``PendingDir`` whose children are nodes, parent
entries, reader futures and sub-directories. ``TreeSaver.drain`` finishes the directories at the
head of a bounded queue as soon as their children are done, so tree blobs are written while the
walk goes on and memory does not grow with the tree. A directory equal to its parent snapshot's
keeps the parent's tree ID without encoding it again.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from ...repo.blob import BlobType
from ...repo.names import unquote
from ...repo.node import Node
from ...repo.tree import encode_tree
from .file_saver import FileSaver, Leaf
from .parent import ParentTree, Raw, to_node
from .state import BackupState, Tally
from .targets import VirtualDir

_MAX_PENDING_DIRS = 512


@dataclass
class PendingDir:
    node: Node | None  # None for the snapshot root
    parent: ParentTree | None
    where: bytes | VirtualDir  # children's path prefix (a real directory) or the virtual directory
    children: list[Node | Raw | Future[list[Leaf]] | PendingDir] = field(default_factory=list)
    tree_id: bytes | None = None
    _done_upto: int = 0  # children before this index are known to be finished

    def ready(self) -> bool:
        children = self.children
        i = self._done_upto
        while i < len(children):
            c = children[i]
            if isinstance(c, Future):
                if not c.done():
                    break
            elif isinstance(c, PendingDir) and c.tree_id is None:
                break
            i += 1
        self._done_upto = i
        return i == len(children)

    def child_path(self, name: bytes) -> bytes:
        if isinstance(self.where, VirtualDir):
            p = self.where.children[name]
            assert isinstance(p, bytes)
            return p
        return self.where + name


class TreeSaver:
    def __init__(self, state: BackupState, files: FileSaver) -> None:
        self.state = state
        self.files = files
        self._pending: deque[PendingDir] = deque()

    def push(self, d: PendingDir) -> None:
        self._pending.append(d)
        self.drain()

    def drain(self, everything: bool = False) -> None:
        while self._pending:
            head = self._pending[0]
            if not (everything or len(self._pending) > _MAX_PENDING_DIRS or head.ready()):
                return
            self._pending.popleft()
            self._finish(head)

    def _finish(self, d: PendingDir) -> None:
        items: list[Node | Raw] = []
        for c in d.children:
            if isinstance(c, Future):
                items.extend(x for x in c.result() if x is not None)
            elif isinstance(c, PendingDir):
                assert c.node is not None and c.tree_id is not None
                c.node.subtree = c.tree_id
                items.append(c.node)
            else:
                items.append(c)
        state = self.state
        state.check()
        p = d.parent
        if p is not None and len(items) == p.count and all(isinstance(x, dict) or p.same_node(x) for x in items):
            d.tree_id = p.tree_id  # unchanged: the parent's tree, not encoded again
        else:
            nodes = [x if isinstance(x, Node) else self._reused_node(d, x) for x in items]
            d.tree_id, _ = state.writer.save(BlobType.TREE, encode_tree([n for n in nodes if n is not None]))
        d.children = []
        d.parent = None
        with state.mu:
            if p is None:
                state.result.dirs_new += 1
            elif p.tree_id == d.tree_id:
                state.result.dirs_unmodified += 1
            else:
                state.result.dirs_changed += 1

    def _reused_node(self, d: PendingDir, raw: Raw) -> Node | None:
        """A reused parent entry as a node, for a changed directory's new tree."""
        node = to_node(raw)
        if node is not None:
            return node
        # the entry does not decode (never written by us or restic): read the file after all
        name = unquote(raw["name"])
        t = Tally()
        try:
            leaf = self.files.leaf(name, d.child_path(name), None, False, t)
        finally:
            self.state.add(t)
        assert not isinstance(leaf, dict)
        return leaf


__all__ = ["PendingDir", "TreeSaver"]
