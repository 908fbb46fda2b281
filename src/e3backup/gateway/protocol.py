"""restic's REST backend protocol, version 2, as the gateway serves it: paths, ranges, media types.

A repository lives at ``/gateway/<repo>/`` (``<repo>`` is ``job-<id>``). Under it:

    POST   /?create=true          create the repository (idempotent)
    HEAD   /config                 size of the config, 404 when there is no repository
    GET    /config                 the config
    POST   /config                 save the config (once: an existing config is never replaced)
    GET    /<type>/                list: JSON [{"name", "size"}] with the v2 media type when the
                                   request accepts it, else a JSON array of names (v1)
    HEAD   /<type>/<name>          size in Content-Length
    GET    /<type>/<name>          content, or a part of it with ``Range: bytes=A-B`` (206)
    POST   /<type>/<name>          save (the body's SHA-256 must be the name)
    DELETE /<type>/<name>          remove

``<type>`` is ``data``, ``keys``, ``locks``, ``snapshots`` or ``index``; ``data`` is flat in the
protocol (``data/<id>``), the storage layout fans it out (``data/<id[:2]>/<id>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..store.base import FileType, Handle

MEDIA_V1 = "application/vnd.x.restic.rest.v1"
MEDIA_V2 = "application/vnd.x.restic.rest.v2"
PREFIX = "/gateway/"

_REPO_RE = re.compile(r"^job-([1-9][0-9]{0,17})$")
_TYPES = {t.value: t for t in FileType if t is not FileType.CONFIG}
_ID_RE = re.compile(r"^[0-9a-f]{64}$")


def repo_name(job_id: int) -> str:
    return f"job-{job_id}"


def repo_path(job_id: int) -> str:
    """The repository's path on the server: the agent's ``rest:`` URL is the server URL plus this."""
    return f"{PREFIX}{repo_name(job_id)}/"


@dataclass(frozen=True)
class Target:
    """What a request path names: the repository root, a type's listing, or one object."""

    job_id: int
    handle: Handle | None = None  # an object (config included)
    listing: FileType | None = None  # a type's directory

    @property
    def root(self) -> bool:
        return self.handle is None and self.listing is None


def parse_path(path: str) -> Target | None:
    """``/gateway/job-7/data/<id>`` -> Target; None for anything that is not a protocol path."""
    if not path.startswith(PREFIX):
        return None
    parts = path[len(PREFIX):].split("/")
    m = _REPO_RE.match(parts[0])
    if m is None:
        return None
    job_id = int(m.group(1))
    rest = parts[1:]
    if rest in ([], [""]):
        return Target(job_id)
    if rest == ["config"]:
        return Target(job_id, handle=Handle(FileType.CONFIG))
    t = _TYPES.get(rest[0])
    if t is None or len(rest) != 2:
        return None
    if rest[1] == "":
        return Target(job_id, listing=t)
    if not _ID_RE.match(rest[1]):
        return None
    return Target(job_id, handle=Handle(t, rest[1]))


class RangeError(ValueError):
    """A Range header the object cannot satisfy (416) or that is not a single byte range."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``Range: bytes=A-B`` (or ``A-``, ``-N``) against an object of ``size`` bytes ->
    (offset, length); None when there is no header (the whole object)."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if m is None or (not m.group(1) and not m.group(2)):
        raise RangeError(f"unsupported Range {header!r}: one byte range (bytes=A-B) expected")
    if not m.group(1):  # the last N bytes
        n = int(m.group(2))
        if n == 0:
            raise RangeError("empty suffix range")
        start = max(0, size - n)
        return start, size - start
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        raise RangeError(f"range {start}-{end} is outside the object's {size} bytes")
    end = min(end, size - 1)
    return start, end - start + 1


__all__ = ["MEDIA_V1", "MEDIA_V2", "PREFIX", "RangeError", "Target", "parse_path", "parse_range", "repo_name",
           "repo_path"]
