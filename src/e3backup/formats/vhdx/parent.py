"""Finding the parent of a differencing VHDX from its parent locator ([MS-VHDX] 2.6.2.6).

A VHDX parent locator holds `parent_linkage` (the parent's DataWriteGuid as "{GUID}"), optionally
`parent_linkage2`, and up to three paths: `relative_path` (to the child's directory),
`volume_path` (\\\\?\\Volume{GUID}\\...) and `absolute_win32_path` (C:\\...). Windows paths are
tried in that order, with backslashes as separators; as a last resort the parent's file name is
looked for beside the child, which is where a restore of a whole chain puts it.
"""

from __future__ import annotations

import os
import posixpath
from uuid import UUID

from e3backup.formats.vhdx.constants import (
    ABSOLUTE_WIN32_PATH,
    PARENT_LINKAGE,
    PARENT_LINKAGE2,
    RELATIVE_PATH,
    VOLUME_PATH,
)
from e3backup.formats.vhdx.structures import parse_guid_string


def _to_posix(path: str) -> str:
    return path.replace("\\", "/")


def parent_candidates(child_path: str, locator: dict[str, str]) -> list[str]:
    """Paths where the parent may be, best first, without duplicates."""
    directory = os.path.dirname(os.path.abspath(child_path))
    found: list[str] = []
    relative = locator.get(RELATIVE_PATH)
    if relative:
        found.append(os.path.normpath(os.path.join(directory, _to_posix(relative))))
    for key in (VOLUME_PATH, ABSOLUTE_WIN32_PATH):
        value = locator.get(key)
        if value and value.startswith("/"):  # a POSIX path written by a non-Windows tool
            found.append(value)
    for key in (RELATIVE_PATH, VOLUME_PATH, ABSOLUTE_WIN32_PATH):
        value = locator.get(key)
        if value:
            found.append(os.path.join(directory, posixpath.basename(_to_posix(value))))
    return list(dict.fromkeys(found))


def linkage_guids(locator: dict[str, str]) -> list[UUID]:
    """The DataWriteGuids a parent may have to be the right one."""
    guids = [parse_guid_string(locator.get(key, "")) for key in (PARENT_LINKAGE, PARENT_LINKAGE2)]
    return [g for g in guids if g is not None]


__all__ = ["linkage_guids", "parent_candidates"]
