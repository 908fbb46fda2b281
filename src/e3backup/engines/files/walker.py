"""Walk the backup targets depth first (the main thread of a files backup).

Each directory is listed once (``scandir``, no stat for entries whose type the listing gives);
sub-directories are walked here, files the parent snapshot has unchanged are recognised here
(an ``lstat`` and a few compares), and every other entry goes to the reader threads in batches.
Each listed directory is pushed to the tree saver, which finishes it once its children are done.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ...repo.node import Node
from .file_saver import FileSaver, Job, Leaf
from .metadata import node_from_stat
from .parent import ParentTree, Raw, load_parent, reusable_content, subtree_of
from .state import BackupState, Tally
from .targets import VirtualDir
from .tree_saver import PendingDir, TreeSaver

_LEAF_BATCH = 32
_SEP = os.sep.encode()


class Walker:
    def __init__(self, state: BackupState, readers: ThreadPoolExecutor, files: FileSaver, trees: TreeSaver,
                 to_user: Callable[[bytes], str] | None = None) -> None:
        self.state = state
        self.to_user = to_user or state.opts.path_style.to_user  # a read path as excludes see it
        self.readers = readers
        self.files = files
        self.trees = trees

    def _load_parent(self, tree_id: bytes | None) -> ParentTree | None:
        return None if tree_id is None else load_parent(self.state.repo, tree_id)

    def walk_virtual(self, vd: VirtualDir, node: Node | None, parent_subtree: bytes | None) -> PendingDir:
        """The directories above the targets (the snapshot root and the targets' parents)."""
        if vd.contents_of is not None:
            st = os.lstat(vd.contents_of)
            return self._walk_dir(vd.contents_of, None, parent_subtree, st.st_dev)
        parent = self._load_parent(parent_subtree)
        d = PendingDir(node, parent, vd)
        entries = parent.entries if parent is not None else {}
        for name, child in sorted(vd.children.items()):
            praw = entries.get(name)
            if isinstance(child, VirtualDir):
                assert child.fs_path is not None
                st = os.lstat(child.fs_path)
                opts = self.state.opts
                cnode = node_from_stat(name, child.fs_path, st, opts.with_atime, windows_meta=opts.windows_meta)
                d.children.append(self.walk_virtual(child, cnode, subtree_of(praw)))
            else:
                entry = self._entry(name, child, None, praw)
                if entry is not None:
                    d.children.append(entry)
        self.trees.push(d)
        return d

    def _entry(
        self, name: bytes, path: bytes, dev: int | None, praw: Raw | None
    ) -> Node | Future[list[Leaf]] | PendingDir | None:
        """A backup target (or any entry the main thread must stat itself)."""
        try:
            st = os.lstat(path)
        except OSError as e:
            self.state.error(path, e)
            return None
        if stat.S_ISDIR(st.st_mode):
            return self._dir_entry(name, path, st, dev, praw)
        return self.readers.submit(self.files.leaves, [(name, path, praw, False)])

    def _dir_entry(
        self, name: bytes, path: bytes, st: os.stat_result, dev: int | None, praw: Raw | None
    ) -> Node | PendingDir | None:
        opts = self.state.opts
        try:
            node = node_from_stat(name, path, st, opts.with_atime, windows_meta=opts.windows_meta)
        except OSError as e:
            self.state.error(path, e)
            return None
        if opts.one_file_system and dev is not None and st.st_dev != dev:
            node.subtree = self.state.empty_tree()  # a mount point: kept, but not crossed
            return node
        return self._walk_dir(path, node, subtree_of(praw), st.st_dev if dev is None else dev)

    def _walk_dir(self, path: bytes, node: Node | None, parent_subtree: bytes | None, dev: int) -> PendingDir:
        """List a directory; sub-directories are walked here, files the parent has unchanged are
        recognised here, everything else goes to the readers (their stat, xattrs and reads then
        run in parallel, away from the walking thread)."""
        state = self.state
        state.check()
        base = path if path.endswith(_SEP) else path + _SEP  # native: "\\?\\" paths take no "/"
        parent = self._load_parent(parent_subtree)
        d = PendingDir(node, parent, base)
        try:
            with os.scandir(path) as it:
                # d_type: no stat here; a regular file is opened by its reader without an lstat
                entries = sorted(
                    (e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)) for e in it
                )
        except OSError as e:
            state.error(path, e)
            entries = []
        excluder = state.opts.excluder or None
        to_user = self.to_user
        readers = self.readers
        leaves = self.files.leaves
        known: dict[bytes, Raw] = parent.entries if parent is not None else {}
        get = known.get
        # with Windows attributes every file's are read again: an ACL can change alone
        reuse = not state.opts.with_atime and state.opts.windows_meta is None
        index = state.repo.index
        t = Tally()
        children = d.children
        batch: list[Job] = []
        for name, is_dir, is_file in entries:
            child_path = base + name
            if excluder is not None and excluder.excluded(to_user(child_path)):
                continue
            praw = get(name)
            if is_dir:
                entry = self._entry(name, child_path, dev, praw)
                if entry is not None:
                    children.append(entry)
                continue
            if praw is not None and is_file and reuse:
                # an unchanged file is recognised here: an lstat and a few compares cost less
                # than handing it to a reader (and taking turns with it for the GIL)
                try:
                    st = os.lstat(child_path)
                except OSError:
                    st = None  # its reader reports it
                if st is not None and praw.get("device_id", 0) == st.st_dev:
                    content = reusable_content(praw, st, index)
                    if content is not None:
                        t.unmodified_file(st.st_size)
                        children.append(praw)
                        continue
            # files go to the readers in batches: one job per file costs more than a small file
            batch.append((name, child_path, praw, is_file))
            if len(batch) == _LEAF_BATCH:
                children.append(readers.submit(leaves, batch))
                batch = []
        if batch:
            children.append(readers.submit(leaves, batch))
        if t.files:
            state.add(t)
        self.trees.push(d)
        return d


__all__ = ["Walker"]
