"""Which snapshots a command means: restic's ``--host``, ``--tag`` and ``--path`` filters, plus a
kind (an image command means image snapshots only).

restic's rules: any of the ``--host`` values; ``--tag a,b --tag c`` means (a and b) or c; every
``--path`` must be among the snapshot's paths. ``latest`` is then the newest matching snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .snapshot import Snapshot


@dataclass(frozen=True)
class SnapshotFilter:
    hosts: tuple[str, ...] = ()
    tag_sets: tuple[frozenset[str], ...] = ()
    paths: tuple[str, ...] = ()
    kind: Callable[[Snapshot], bool] | None = None
    kind_name: str = ""
    """Names the kind in messages ("image"): "no image snapshot found"."""

    @classmethod
    def from_options(
        cls,
        hosts: Iterable[str] = (),
        tags: Iterable[str] = (),
        paths: Iterable[str] = (),
        kind: Callable[[Snapshot], bool] | None = None,
        kind_name: str = "",
    ) -> SnapshotFilter:
        """From repeated CLI options; each ``--tag`` value is a comma-separated set."""
        tag_sets = tuple(frozenset(t for t in value.split(",") if t) for value in tags)
        return cls(tuple(hosts), tuple(s for s in tag_sets if s), tuple(paths), kind, kind_name)

    def __call__(self, s: Snapshot) -> bool:
        if self.kind is not None and not self.kind(s):
            return False
        if self.hosts and s.hostname not in self.hosts:
            return False
        if self.tag_sets and not any(want <= set(s.tags) for want in self.tag_sets):
            return False
        return all(p in s.paths for p in self.paths)

    def describe(self) -> str:
        """What was asked for, for "no ... snapshot found" messages."""
        parts = [f"host {' or '.join(self.hosts)}"] if self.hosts else []
        if self.tag_sets:
            parts.append("tags " + " or ".join(",".join(sorted(s)) for s in self.tag_sets))
        if self.paths:
            parts.append(f"path {', '.join(self.paths)}")
        kind = f"{self.kind_name} snapshot" if self.kind_name else "snapshot"
        return kind + (f" with {' and '.join(parts)}" if parts else "")


__all__ = ["SnapshotFilter"]
