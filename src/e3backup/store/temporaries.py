"""Temporary files a local store writes before renaming them into place, and their leftovers.

A save writes ``<name>-tmp-<host>-<pid>-<random>`` beside its final name, then renames it. A
process killed in between (SIGKILL, power loss) leaves the temporary behind; its name says who
wrote it, so the next writer can tell a dead process's leftover (same host, PID gone, the rule
restic applies to locks) from a live one's file in progress. Names of other shapes that still
end in ``-tmp-...`` (restic's own, or e3backup's before the host was recorded) have no known
owner: only a command holding the exclusive lock (prune) may remove those.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

TMP_MARK = "-tmp-"
_NAME_RE = re.compile(r"^(?P<final>[0-9a-f]{64}|config)-tmp-(?P<rest>.+)$")
_OWNED_RE = re.compile(r"^(?P<host>.+)-(?P<pid>[0-9]+)-[0-9a-f]{8}$")
_PLAIN_HOST = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def host_tag() -> str:
    """This host as it appears in temporary names: the host name, or a hash of an unusual one."""
    host = socket.gethostname()
    if _PLAIN_HOST.match(host):
        return host
    return "h" + hashlib.sha256(host.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def temporary_name(final: str) -> str:
    """The name to write ``final`` under until it is complete."""
    return f"{final}{TMP_MARK}{host_tag()}-{os.getpid()}-{os.urandom(4).hex()}"


def process_alive(pid: int) -> bool:
    """True if a process with this PID exists on this host (or may: not ours to signal).

    On Windows ``os.kill(pid, 0)`` would terminate the process (TerminateProcess with exit code
    0), so there every PID counts as alive: a lock or temporary is then left to age or to prune."""
    if sys.platform == "win32":
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Temporary:
    """A temporary file found in the store: its path relative to the repository, its size, and
    its writer (host tag and PID) when the name records them."""

    path: str
    size: int
    host: str | None
    pid: int | None
    upload_id: str = ""
    """For an S3 multipart upload left open: its ID (``path`` is its key)."""

    @property
    def writer_is_dead(self) -> bool:
        """Written by a process of this host that no longer exists: certainly abandoned."""
        return self.host == host_tag() and self.pid is not None and not process_alive(self.pid)

    @property
    def writer_is_alive_here(self) -> bool:
        return self.host == host_tag() and self.pid is not None and process_alive(self.pid)

    def describe(self) -> str:
        if self.upload_id:
            return f"unfinished multipart upload of {self.path}"
        who = f"PID {self.pid} on {self.host}" if self.host is not None else "an unknown process"
        return f"temporary file {self.path} ({self.size} bytes, written by {who})"


def parse_temporary(rel_path: str, size: int) -> Temporary | None:
    """The ``Temporary`` a file name stands for, or ``None`` if it is not a temporary."""
    m = _NAME_RE.match(os.path.basename(rel_path))
    if m is None:
        return None
    owned = _OWNED_RE.match(m["rest"])
    if owned is None:
        return Temporary(rel_path, size, None, None)
    return Temporary(rel_path, size, owned["host"], int(owned["pid"]))


@runtime_checkable
class KeepsTemporaries(Protocol):
    """A store that can find what interrupted saves left: the local store's temporary files;
    an S3 store's unfinished multipart uploads (e3backup's PUTs are single requests, atomic, but
    other writers of the repository, such as restic, upload large packs in parts)."""

    owners_known: bool
    """Whether a temporary names its writer (host, PID), so a dead one's can be told apart."""

    def temporaries(self) -> list[Temporary]:
        """Every temporary file in the repository."""
        ...

    def remove_temporary(self, t: Temporary) -> None:
        """Delete one; a file already gone is fine."""
        ...


def temporaries_of(store: object) -> KeepsTemporaries | None:
    """The store (or the store it wraps) that keeps temporaries, if any."""
    while not isinstance(store, KeepsTemporaries):
        inner = getattr(store, "inner", None)
        if inner is None:
            return None
        store = inner
    return store


__all__ = [
    "TMP_MARK",
    "KeepsTemporaries",
    "Temporary",
    "host_tag",
    "parse_temporary",
    "process_alive",
    "temporaries_of",
    "temporary_name",
]
