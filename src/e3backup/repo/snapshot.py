"""Snapshot files (``snapshots/<id>``): a root tree plus who, when and what (spec 7.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import IntegrityError
from .timefmt import format_ns, parse_ns


@dataclass
class Snapshot:
    time: int
    tree: bytes
    paths: list[str] = field(default_factory=list)
    hostname: str = ""
    username: str = ""
    uid: int = 0
    gid: int = 0
    excludes: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    parent: str = ""
    original: str = ""
    program_version: str = ""
    summary: dict[str, Any] | None = None
    id: str = ""  # the file name, set when loaded or saved

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"time": format_ns(self.time)}
        if self.parent:
            d["parent"] = self.parent
        d["tree"] = self.tree.hex()
        d["paths"] = self.paths
        if self.hostname:
            d["hostname"] = self.hostname
        if self.username:
            d["username"] = self.username
        if self.uid:
            d["uid"] = self.uid
        if self.gid:
            d["gid"] = self.gid
        if self.excludes:
            d["excludes"] = self.excludes
        if self.tags:
            d["tags"] = self.tags
        if self.original:
            d["original"] = self.original
        if self.program_version:
            d["program_version"] = self.program_version
        if self.summary:
            d["summary"] = self.summary
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], snap_id: str = "") -> Snapshot:
        try:
            return cls(
                time=parse_ns(d["time"]) if d.get("time") else 0,
                tree=bytes.fromhex(d["tree"]),
                paths=list(d.get("paths") or []),
                hostname=str(d.get("hostname") or ""),
                username=str(d.get("username") or ""),
                uid=int(d.get("uid") or 0),
                gid=int(d.get("gid") or 0),
                excludes=list(d.get("excludes") or []),
                tags=list(d.get("tags") or []),
                parent=str(d.get("parent") or ""),
                original=str(d.get("original") or ""),
                program_version=str(d.get("program_version") or ""),
                summary=d.get("summary"),
                id=snap_id,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise IntegrityError(f"snapshot {snap_id}: invalid: {e}") from e

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def public_json(self) -> dict[str, Any]:
        """The ``snapshots --json`` shape (restic's, plus ``id`` and ``short_id``)."""
        d = self.to_json()
        d["id"] = self.id
        d["short_id"] = self.short_id
        d.setdefault("tags", [])
        d.setdefault("hostname", "")
        return d


__all__ = ["Snapshot"]
