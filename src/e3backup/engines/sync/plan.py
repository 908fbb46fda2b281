"""What a sync will do, decided before anything changes: pure, no I/O.

Keys only in the source are new; keys on both sides were judged (same or changed) by the
caller; keys only in the destination are deleted, unless they are excluded (not ours to
touch, as rclone without ``--delete-excluded``), lie under a source part that could not be read
(``protected``), or the policy keeps deleted files. The max_delete guard then refuses every
deletion when more than ``max_delete_percent`` of the destination's files would go: a source
that vanished or came back empty must not empty the mirror.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ...sources.excludes import Excluder
from .source import Scan


@dataclass
class Plan:
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    delete: list[str] = field(default_factory=list)
    kept: int = 0  # deletion candidates kept by policy
    refused: int = 0  # deletion candidates kept by the guard
    dest_files: int = 0

    @property
    def upload(self) -> list[str]:
        return self.new + self.changed


def _protected(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or ((p == "" or p.endswith("/")) and key.startswith(p)) for p in prefixes)


def _excluded(key: str, scan: Scan, excluder: Excluder) -> bool:
    if not excluder:
        return False
    for prefix, root in scan.roots.items():
        if key.startswith(prefix):
            path = root.rstrip("/\\") + "/" + key[len(prefix):]
            return excluder.excluded(path.replace("\\", "/"))
    return False


def deletion_candidates(scan: Scan, dest_keys: Iterable[str], excluder: Excluder) -> list[str]:
    return sorted(k for k in dest_keys
                  if k not in scan.files and not _protected(k, scan.protected) and not _excluded(k, scan, excluder))


def guard_allows(deletes: int, dest_files: int, max_delete_percent: int) -> bool:
    """True when deleting ``deletes`` of ``dest_files`` stays within the limit (100: no limit)."""
    if deletes == 0 or max_delete_percent >= 100:
        return True
    return deletes * 100 <= dest_files * max_delete_percent


def make_plan(scan: Scan, dest_keys: Iterable[str], changed: set[str], *, excluder: Excluder,
              delete: bool, max_delete_percent: int) -> Plan:
    dest = set(dest_keys)
    plan = Plan(dest_files=len(dest))
    for key in sorted(scan.files):
        if key not in dest:
            plan.new.append(key)
        elif key in changed:
            plan.changed.append(key)
        else:
            plan.unchanged += 1
    candidates = deletion_candidates(scan, dest, excluder)
    if not delete:
        plan.kept = len(candidates)
    elif not guard_allows(len(candidates), len(dest), max_delete_percent):
        plan.refused = len(candidates)
    else:
        plan.delete = candidates
    return plan


__all__ = ["Plan", "deletion_candidates", "guard_allows", "make_plan"]
