"""Test hooks: SIGKILL this process at a named point of a write, to prove what a crash leaves.

``E3BACKUP_CRASH_AT=NAME#N`` kills the process the N-th time (default the first) it reaches the
point ``NAME``; ``E3BACKUP_CRASH_TRACE=FILE`` appends every point reached to FILE, so a test can
learn a command's points and pick some at random (``tests/faults/test_kills.py``, the soak in
``scripts/soak.py``). The local store names a point per write: ``save-<type>-tmp`` once a file is
complete under its temporary name, ``save-<type>`` once renamed into place, ``remove-<type>``
before a file is deleted (types as the store's directories: ``data``, ``index``, ``snapshots``,
``locks``, ``keys``). Prune has its own steps (``repo.prune.STEPS``). Unset, a point costs one
comparison.
"""

from __future__ import annotations

import os
import threading

from .platform.compat import kill_self

CRASH_ENV = "E3BACKUP_CRASH_AT"
TRACE_ENV = "E3BACKUP_CRASH_TRACE"

_target = os.environ.get(CRASH_ENV) or None
_trace = os.environ.get(TRACE_ENV) or None
_name, _, _nth = (_target or "").partition("#")
_count = 0
_mu = threading.Lock()


def crash_point(name: str) -> None:
    """SIGKILL this process if ``E3BACKUP_CRASH_AT`` names this point (and this occurrence)."""
    if _target is None and _trace is None:
        return
    global _count
    with _mu:
        if _trace is not None:
            with open(_trace, "a") as f:
                f.write(name + "\n")
        if name != _name:
            return
        _count += 1
        if _count < int(_nth or 1):
            return
    kill_self()


__all__ = ["CRASH_ENV", "TRACE_ENV", "crash_point"]
