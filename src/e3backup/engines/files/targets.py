"""Lay the backup targets out in the snapshot tree as restic does.

An absolute target keeps every component from ``/`` (``/home/a/src`` → ``home/a/src``); a
relative one keeps its components without leading ``..`` (``../../b`` → ``b``); ``.`` puts the
directory's contents at the root. Intermediate directories are real directories whose metadata
is stored too.

Windows paths (``PathStyle.windows``) follow restic's ``pathComponents``: the volume becomes the
first component, a drive without its colon (``C:\\Users\\a`` → ``/C/Users/a``) and a UNC share
as its volume name (``\\\\srv\\share\\d`` → ``/\\\\srv\\share/d``); the drive's root directory
carries the volume node's metadata. ``PathStyle.to_fs`` says where a target's bytes are read
(the ``\\\\?\\`` long-path form on Windows, a shadow copy, a test's folder): the tree keeps the
user's names, the walker reads the mapped path.
"""

from __future__ import annotations

import ntpath
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from ...errors import UsageError


@dataclass
class VirtualDir:
    """A directory of the snapshot tree that is not itself a target (or the root)."""

    fs_path: bytes | None  # the real directory whose metadata the node carries (None: root)
    children: dict[bytes, VirtualDir | bytes] = field(default_factory=dict)  # name -> dir or target path
    contents_of: bytes | None = None  # a target whose contents fill this directory (``.``)


def _same(path: bytes) -> bytes:
    return path


def _user_path(path: bytes) -> str:
    return os.fsdecode(os.path.abspath(path))


def windows_user_path(path: bytes) -> str:
    """The path as the user names it (excludes match this): without the long-path prefix."""
    if path.startswith(b"\\\\?\\UNC\\"):
        path = b"\\\\" + path[8:]
    elif path.startswith(b"\\\\?\\"):
        path = path[4:]
    # excludes match absolute "/" paths: C:\\Users\\a -> /C:/Users/a (pattern C:/Users/*/AppData)
    return "/" + os.fsdecode(path).replace("\\", "/").lstrip("/")


def long_path(path: bytes) -> bytes:
    """Windows: the ``\\\\?\\`` form of an absolute path, which lifts the 260-character limit."""
    if path.startswith(b"\\\\?\\"):
        return path
    if path.startswith(b"\\\\"):
        return b"\\\\?\\UNC\\" + path[2:]
    return b"\\\\?\\" + ntpath.abspath(path)


@dataclass(frozen=True)
class PathStyle:
    windows: bool = False
    to_fs: Callable[[bytes], bytes] = _same
    to_user: Callable[[bytes], str] = _user_path  # a read path as excludes see it

    def abspath(self, path: str) -> str:
        """The target as the snapshot lists it (restic stores ``C:\\Users\\a`` on Windows)."""
        if self.windows:
            return ntpath.normpath(path) if ntpath.isabs(path) else ntpath.abspath(path)
        return os.path.abspath(path)


def native_style() -> PathStyle:
    return PathStyle(True, long_path, windows_user_path) if sys.platform == "win32" else PathStyle()


def join(path: bytes, name: bytes, windows: bool = False) -> bytes:
    """The real path of ``name`` inside ``path`` as ``components`` counts them."""
    if windows:
        if path == b"":  # the volume: a drive letter's root, or a share
            return name + b":\\" if len(name) == 1 else name + b"\\"
        return path + name if path.endswith(b"\\") else path + b"\\" + name
    return name if path == b"." else (path + name if path.endswith(b"/") else path + b"/" + name)


def windows_components(target: bytes) -> tuple[bytes, list[bytes]]:
    """restic's ``pathComponents`` with Windows rules (see the module docstring)."""
    if target.startswith(b"\\\\?\\UNC\\"):
        target = b"\\\\" + target[8:]
    elif target.startswith(b"\\\\?\\"):
        target = target[4:]
    drive, rest = ntpath.splitdrive(ntpath.normpath(target))
    parts = [c for c in rest.split(b"\\") if c and c != b"."]
    if not drive:
        ups = 0
        while ups < len(parts) and parts[ups] == b"..":
            ups += 1
        return (b"\\".join([b".."] * ups) if ups else b"."), parts[ups:]
    volume = drive[:1] if len(drive) == 2 and drive[1:2] == b":" else drive
    return b"", [volume, *parts]


def components(target: bytes, windows: bool = False) -> tuple[bytes, list[bytes]]:
    """``(prefix, comps)``: the real path of the first component's parent and the components."""
    if windows:
        return windows_components(target)
    p = os.path.normpath(target)
    if p.startswith(b"/"):
        return b"/", [c for c in p.split(b"/") if c]
    parts = [c for c in p.split(b"/") if c and c != b"."]
    ups = 0
    while ups < len(parts) and parts[ups] == b"..":
        ups += 1
    prefix = b"/".join([b".."] * ups) if ups else b"."
    return prefix, parts[ups:]


def build(targets: list[bytes], style: PathStyle | None = None) -> VirtualDir:
    style = style or PathStyle()
    win, to_fs = style.windows, style.to_fs
    root = VirtualDir(None)
    for t in targets:
        prefix, comps = components(t, win)
        real = to_fs(ntpath.normpath(t) if win else os.path.normpath(t))
        if not comps:
            if root.contents_of is not None or root.children:
                raise UsageError(f"cannot combine {t.decode(errors='replace')!r} with other targets")
            root.contents_of = real
            continue
        if root.contents_of is not None:
            raise UsageError(f"cannot combine {t.decode(errors='replace')!r} with other targets")
        cur = root
        path = prefix
        for c in comps[:-1]:
            path = join(path, c, win)
            nxt = cur.children.get(c)
            if nxt is None:
                nxt = cur.children[c] = VirtualDir(to_fs(path))
            elif not isinstance(nxt, VirtualDir):
                break  # an enclosing target already covers this one
            cur = nxt
        else:
            last = comps[-1]
            existing = cur.children.get(last)
            if existing is not None and existing != real:
                if isinstance(existing, VirtualDir):
                    cur.children[last] = real  # the target covers what was below it
                else:
                    raise UsageError(
                        f"targets {existing.decode(errors='replace')!r} and {t.decode(errors='replace')!r} "
                        "have the same name in the snapshot"
                    )
            else:
                cur.children[last] = real
    return root


__all__ = ["PathStyle", "VirtualDir", "build", "components", "join", "long_path", "native_style"]
