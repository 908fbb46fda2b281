"""Tree nodes from ``lstat``, as restic's archiver fills them (spec 7.3).

On Windows there are no owners by number, no extended attributes through ``os`` and no device
numbers: nodes carry uid/gid 0 and no xattrs, as restic 0.14 writes them there; ``pwd``/``grp``
are imported only on POSIX. The file attributes (hidden, system...), creation time and security
descriptor (owner, group, ACLs) go into ``generic_attributes`` as restic 0.17+ stores them
(``platform.windows.filemeta``), read through the options' ``windows_meta``.
"""

from __future__ import annotations

import os
import stat
import sys
from functools import lru_cache

from ...platform.windows.filemeta import FileMetaApi, to_generic
from ...repo.node import Node, go_mode

_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFBLK: "dev",
    stat.S_IFCHR: "chardev",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


@lru_cache(maxsize=4096)
def user_name(uid: int) -> str:
    if sys.platform == "win32":
        return ""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@lru_cache(maxsize=4096)
def group_name(gid: int) -> str:
    if sys.platform == "win32":
        return ""
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def node_type(st: os.stat_result) -> str:
    return _TYPES.get(stat.S_IFMT(st.st_mode), "irregular")


def read_xattrs(path: bytes | int) -> list[tuple[str, bytes]]:
    """Extended attributes by name, of ``path`` (not followed) or of an open descriptor."""
    if sys.platform == "win32":
        return []  # no xattr calls there (NTFS extended attributes and ADS are not stored)
    follow = isinstance(path, int)  # a descriptor: nothing to follow, and lgetxattr refuses it
    try:
        names = os.listxattr(path, follow_symlinks=follow)
    except OSError:
        return []
    if not names:
        return []
    out = []
    for n in sorted(names):
        try:
            out.append((n, os.getxattr(path, n, follow_symlinks=follow)))
        except OSError:
            continue
    return out


# a handful of distinct st_mode values in a whole tree: convert each once
_go_mode = lru_cache(maxsize=1024)(go_mode)


def node_from_stat(
    name: bytes,
    path: bytes,
    st: os.stat_result,
    with_atime: bool = False,
    fd: int = -1,
    windows_meta: FileMetaApi | None = None,
) -> Node:
    """A node without content or subtree; symlink targets, xattrs and (with ``windows_meta``) the
    Windows attributes and security descriptor are read here.

    ``fd``, when given, is ``path`` already open: its xattrs are read through it (no path lookup).
    Built in one constructor call: this runs once per file in a first backup.
    """
    mode = st.st_mode
    t = node_type(st)
    uid, gid, mtime = st.st_uid, st.st_gid, st.st_mtime_ns
    node = Node(
        name=name,
        type=t,
        mode=_go_mode(mode),
        mtime=mtime,
        atime=st.st_atime_ns if with_atime else mtime,
        ctime=st.st_ctime_ns,
        uid=uid,
        gid=gid,
        user=user_name(uid),
        group=group_name(gid),
        inode=st.st_ino,
        device_id=st.st_dev,
        size=st.st_size if t == "file" else 0,
        links=st.st_nlink,
        xattrs=read_xattrs(path if fd < 0 else fd),
    )
    if windows_meta is not None:
        node.extra["generic_attributes"] = to_generic(windows_meta.read(os.fsdecode(path)))
    if t == "symlink":
        node.linktarget = os.readlink(path)
    elif t in ("dev", "chardev") and sys.platform != "win32":
        node.device = st.st_rdev
    return node


__all__ = ["group_name", "node_from_stat", "node_type", "read_xattrs", "user_name"]
