"""List a folder of this machine for the dashboard's job wizard (``list_folder`` command).

Names, types and sizes only; folders first, at most ``MAX_ENTRIES``. With ``allowed_sources``
set, only those and what is below them can be listed (the top lists them), so the server learns
no more of the machine than it may back up. On Windows the top is the drive letters; ``\\\\server``
lists that server's disk shares (``NetShareEnum``, administrative ``$`` shares left out), and a
UNC path (``\\\\server\\share\\folder``) is listed like any folder.
"""

from __future__ import annotations

import os
import re
import stat
import string
import sys
from collections.abc import Callable

from ..api.folders import MAX_ENTRIES, EntryType, FolderEntry, FolderListing
from .validate import RunRefused, _allowed, _path


def windows_drives() -> list[str]:
    """``C:\\``, ``D:\\``... that exist (Windows only)."""
    listdrives: Callable[[], list[str]] | None = getattr(os, "listdrives", None)
    if listdrives is not None:  # Python 3.12+
        return sorted(listdrives())
    return [f"{letter}:\\" for letter in string.ascii_uppercase if os.path.exists(f"{letter}:\\")]


STYPE_DISKTREE = 0
STYPE_SPECIAL = 0x80000000
_UNC_SERVER = re.compile(r"^\\\\([^\\/]+)[\\/]?$")


def net_share_enum(server: str) -> list[dict[str, object]]:
    """``NetShareEnum`` at level 1 (pywin32's ``win32net``): SHARE_INFO_1 dicts with ``netname``,
    ``type`` and ``remark``, every page of them (Windows only)."""
    import win32net  # type: ignore[import-not-found, unused-ignore]  # pywin32, Windows only

    shares: list[dict[str, object]] = []
    resume = 0
    while True:
        page, _total, resume = win32net.NetShareEnum(server, 1, resume)
        shares.extend(page)
        if not resume:
            return shares


def _shares(path: str, server: str, enum: Callable[[str], list[dict[str, object]]]) -> FolderListing:
    """The disk shares of ``\\\\server`` (administrative ``C$``-style shares left out)."""
    try:
        found = enum(server)
    except Exception as e:  # pywin32 raises pywintypes.error: a refusal to show, not a crash
        raise RunRefused("path", f"cannot list the shares of \\\\{server}: {e}") from None
    entries = []
    for share in found:
        kind = share.get("type", 0)
        kind = kind if isinstance(kind, int) else 0
        if kind & 0xFF == STYPE_DISKTREE and not kind & STYPE_SPECIAL:
            name = str(share["netname"])
            entries.append(FolderEntry(name=name, path=f"\\\\{server}\\{name}", type="dir"))
    entries.sort(key=lambda e: e.name.lower())
    return FolderListing(path=path, parent="", entries=entries, truncated=False)


def _parent(path: str, windows: bool) -> str | None:
    if windows:
        trimmed = path.rstrip("\\/")
        if re.fullmatch(r"[A-Za-z]:", trimmed) or _UNC_SERVER.match(trimmed):
            return ""
        head = trimmed.rsplit("\\", 1)[0] if "\\" in trimmed else ""
        return head + "\\" if re.fullmatch(r"[A-Za-z]:", head) else head
    if path == "/":
        return ""
    return os.path.dirname(path.rstrip("/")) or "/"


def _top(platform: str, allowed: list[str] | None, drives: Callable[[], list[str]]) -> FolderListing:
    if allowed is not None:
        entries = [FolderEntry(name=a, path=a, type="dir") for a in allowed]
    elif platform.startswith("win"):
        entries = [FolderEntry(name=d.rstrip("\\"), path=d, type="drive") for d in drives()]
    else:
        return list_folder("/", platform, allowed, drives)
    return FolderListing(path="", parent=None, entries=entries, truncated=False)


def list_folder(path: str, platform: str = sys.platform, allowed: list[str] | None = None,
                drives: Callable[[], list[str]] = windows_drives,
                shares: Callable[[str], list[dict[str, object]]] = net_share_enum) -> FolderListing:
    """The listing of ``path`` ("" : the top; ``\\\\server`` on Windows: its disk shares);
    ``RunRefused`` naming the problem otherwise."""
    if not path:
        return _top(platform, allowed, drives)
    _path("path", path)
    server = _UNC_SERVER.match(path)
    if platform.startswith("win") and server and allowed is None:
        return _shares(path, server.group(1), shares)
    if allowed is not None and not _allowed(path, allowed):
        raise RunRefused("path", f"{path} is not in this agent's allowed_sources")
    entries: list[FolderEntry] = []
    truncated = False
    try:
        with os.scandir(path) as it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                kind: EntryType = ("dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode)
                        else "link" if stat.S_ISLNK(st.st_mode) else "other")
                entries.append(FolderEntry(name=e.name, path=e.path, type=kind,
                                           size=st.st_size if kind == "file" else 0))
    except FileNotFoundError:
        raise RunRefused("path", f"{path} does not exist") from None
    except NotADirectoryError:
        raise RunRefused("path", f"{path} is not a folder") from None
    except PermissionError:
        raise RunRefused("path", f"{path}: permission denied") from None
    entries.sort(key=lambda x: (x.type != "dir", x.name.lower(), x.name))
    if len(entries) > MAX_ENTRIES:
        entries, truncated = entries[:MAX_ENTRIES], True
    windows = platform.startswith("win")
    parent = _parent(path, windows)
    if allowed is not None and parent and not _allowed(parent, allowed):
        parent = ""  # up from an allowed source is the list of allowed sources
    return FolderListing(path=path, parent=parent, entries=entries, truncated=truncated)


__all__ = ["list_folder", "windows_drives"]
