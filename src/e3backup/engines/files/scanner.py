"""Count files and bytes ahead of a backup, for the percentage and ETA.

Runs in its own thread beside the backup and only when someone watches the progress (a bar,
JSON lines or the agent); it never fails the backup, it just skips what it cannot list.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from ...progress import Progress
from ...sources.excludes import Excluder

_SEP = os.sep.encode()
_REPORT_EVERY = 1000  # files between two updates of the totals


def _user(path: bytes) -> str:
    return os.fsdecode(os.path.abspath(path))


def scan(targets: list[bytes], excluder: Excluder | None, progress: Progress,
         to_user: Callable[[bytes], str] = _user) -> None:
    files = 0
    nbytes = 0
    stack = list(targets)
    while stack:
        p = stack.pop()
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            try:
                for name in os.listdir(p):
                    child = p.rstrip(_SEP) + _SEP + name
                    if not (excluder and excluder.excluded(to_user(child))):
                        stack.append(child)
            except OSError:
                pass
        elif not stat.S_ISSOCK(st.st_mode):
            files += 1
            if stat.S_ISREG(st.st_mode):
                nbytes += st.st_size
        if files % _REPORT_EVERY == 0:
            progress.set_scan(files, nbytes)
    progress.set_scan(files, nbytes, done=True)


__all__ = ["scan"]
