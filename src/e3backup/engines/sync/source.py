"""The source side: walk the source folders into object keys, sizes and modification times.

One source's files are keyed by their path relative to it; several sources each get their
folder name as the first key component (``photos/2024/a.jpg``), so one destination holds them
side by side. Symlinks and special files are skipped (a plain-file mirror cannot hold them), as
rclone does without ``-L``. A folder that cannot be read is *protected*: what lies under it in
the destination is unknown to this run, so nothing there is deleted.
"""

from __future__ import annotations

import ntpath
import os
import re
import stat
from dataclasses import dataclass, field

from ...errors import UsageError
from ...sources.excludes import Excluder

MAX_KEY_BYTES = 1024  # S3's limit on a key


@dataclass(frozen=True)
class SourceFile:
    path: str  # absolute
    size: int
    mtime_ns: int


@dataclass
class Scan:
    files: dict[str, SourceFile] = field(default_factory=dict)
    roots: dict[str, str] = field(default_factory=dict)  # key prefix ("" or "name/") -> folder
    protected: list[str] = field(default_factory=list)  # key prefixes not to delete under
    missing: list[str] = field(default_factory=list)  # source roots that do not exist
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    skipped: int = 0  # symlinks, sockets, devices

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files.values())


def source_name(path: str) -> str:
    """The first key component a source gets when there are several: its folder name (a drive
    letter for a drive root, ``root`` for ``/``)."""
    stripped = path.rstrip("/\\")
    if "\\" in path or re.match(r"^[A-Za-z]:", path):
        drive, rest = ntpath.splitdrive(stripped)
        name = ntpath.basename(rest) or drive.rstrip(":")
    else:
        name = os.path.basename(stripped)
    return name or "root"


def key_prefixes(sources: tuple[str, ...]) -> dict[str, str]:
    """Key prefix of each source root; two sources with one folder name are refused."""
    roots = [os.path.abspath(s) for s in sources]
    if len(roots) == 1:
        return {"": roots[0]}
    prefixes: dict[str, str] = {}
    for root in roots:
        prefix = source_name(root) + "/"
        if prefix in prefixes:
            raise UsageError(
                f"sync: sources {prefixes[prefix]} and {root} would share the destination folder "
                f"{prefix!r}; sync them to different destinations"
            )
        prefixes[prefix] = root
    return prefixes


def _slash(path: str) -> str:
    return path.replace(os.sep, "/") if os.sep != "/" else path


def scan(sources: tuple[str, ...], excluder: Excluder) -> Scan:
    out = Scan(roots=key_prefixes(sources))
    for prefix, root in out.roots.items():
        try:
            st = os.stat(root)
        except FileNotFoundError:
            out.missing.append(root)
            out.protected.append(prefix)
            continue
        except OSError as e:
            out.errors.append((root, e.strerror or str(e)))
            out.protected.append(prefix)
            continue
        if stat.S_ISREG(st.st_mode):  # a single file as a source
            _add(out, prefix + source_name(root) if prefix else source_name(root), root, st)
            continue
        _walk(out, prefix, root, excluder)
    return out


def _walk(out: Scan, prefix: str, root: str, excluder: Excluder) -> None:
    stack = [(root, prefix)]
    while stack:
        folder, key_base = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as e:
            out.errors.append((folder, f"cannot list folder: {e.strerror or e}"))
            out.protected.append(key_base)
            continue
        for entry in entries:
            if excluder and excluder.excluded(_slash(entry.path)):
                continue
            key = key_base + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                out.errors.append((entry.path, e.strerror or str(e)))
                out.protected.append(key)
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append((entry.path, key + "/"))
            elif stat.S_ISREG(st.st_mode):
                _add(out, key, entry.path, st)
            else:
                out.skipped += 1


def _add(out: Scan, key: str, path: str, st: os.stat_result) -> None:
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        out.errors.append((path, "the name is not valid UTF-8; object keys must be"))
        return
    if len(encoded) > MAX_KEY_BYTES:
        out.errors.append((path, f"the object key would be longer than {MAX_KEY_BYTES} bytes"))
        return
    out.files[key] = SourceFile(path, st.st_size, st.st_mtime_ns)


__all__ = ["MAX_KEY_BYTES", "Scan", "SourceFile", "key_prefixes", "scan", "source_name"]
