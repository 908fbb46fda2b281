"""LVM snapshots through the lvm2 tools (``lvs``, ``vgs``, ``lvcreate -s``, ``lvremove -f``).

A snapshot is ``e3backup-snap-<run id>`` in the origin's volume group, sized 5 % of the origin
rounded up to whole extents (``-L <bytes>b``; the seeds' ``-L 5%ORIGIN``), read at
``/dev/VG/NAME`` and removed with ``lvremove -f`` on every exit path. Snapshots left by a crashed
run carry the same prefix and are removed by ``remove_stale()`` at the next start. Only the
tools' JSON reports are parsed. Tested against recorded lvm2 output (no device-mapper here).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from e3backup.events import Event
from e3backup.sources.errors import SnapshotError
from e3backup.sources.snapshot.base import CommandResult, CommandRunner, Snapshot
from e3backup.sources.snapshot.none import NoSnapshotProvider

PREFIX = "e3backup-snap-"
SNAPSHOT_PERCENT = 5
LV_FIELDS = "lv_name,vg_name,lv_path,lv_size,origin,lv_attr"


@dataclass(frozen=True)
class LogicalVolume:
    name: str
    vg: str
    path: str
    size: int
    origin: str = ""
    attr: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.vg}/{self.name}"


def snapshot_size(origin_size: int, extent_size: int) -> int:
    """5 % of the origin, rounded up to whole extents (at least one)."""
    wanted = -(-origin_size * SNAPSHOT_PERCENT // 100)
    return max(1, -(-wanted // extent_size)) * extent_size


def snapshot_name(run_id: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9+_.-]", "-", run_id).strip("-")
    if not clean:
        raise ValueError(f"run id {run_id!r} gives an empty snapshot name")
    return PREFIX + clean


def _report(result: CommandResult, kind: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(result.stdout)
        rows: list[dict[str, Any]] = []
        for part in doc["report"]:
            rows.extend(part.get(kind, []))
        return rows
    except (ValueError, KeyError, TypeError) as e:
        raise SnapshotError(f"unexpected lvm2 report: {e}: {result.stdout[:200]!r}") from e


def _lv(row: dict[str, Any]) -> LogicalVolume:
    return LogicalVolume(
        row["lv_name"],
        row["vg_name"],
        row["lv_path"],
        int(row["lv_size"]),
        row.get("origin", ""),
        row.get("lv_attr", ""),
    )


class LvmSnapshotProvider:
    name = "lvm"

    def __init__(
        self,
        runner: CommandRunner,
        run_id: str,
        on_event: Callable[[Event], None] | None = None,
        fallback_to_live: bool = False,
    ) -> None:
        self.runner = runner
        self.snap_name = snapshot_name(run_id)
        self.on_event = on_event
        self.fallback_to_live = fallback_to_live

    def _run(self, *argv: str) -> CommandResult:
        return self.runner.run(list(argv))

    def logical_volume(self, source: str) -> LogicalVolume | None:
        """The LV behind ``source`` (``/dev/VG/LV``, ``VG/LV``, ``/dev/mapper/...``), or None."""
        r = self._run("lvs", "--reportformat", "json", "-o", LV_FIELDS, "--units", "b", "--nosuffix", source)
        if r.returncode != 0:
            return None
        rows = _report(r, "lv")
        return _lv(rows[0]) if len(rows) == 1 else None

    def extent_size(self, vg: str) -> int:
        r = self._run(
            "vgs", "--reportformat", "json", "-o", "vg_name,vg_extent_size", "--units", "b", "--nosuffix", vg
        )
        rows = _report(r, "vg") if r.returncode == 0 else []
        if len(rows) != 1:
            raise SnapshotError(f"vgs {vg}: no such volume group: {r.stderr.strip()}")
        return int(rows[0]["vg_extent_size"])

    def stale_snapshots(self) -> list[LogicalVolume]:
        r = self._run("lvs", "--reportformat", "json", "-o", LV_FIELDS, "--units", "b", "--nosuffix")
        if r.returncode != 0:
            raise SnapshotError(f"lvs failed ({r.returncode}): {r.stderr.strip()}")
        return [lv for lv in map(_lv, _report(r, "lv")) if lv.name.startswith(PREFIX)]

    def remove_stale(self) -> list[str]:
        """Remove snapshots left by crashed runs; returns their ``VG/LV`` names."""
        removed = []
        for lv in self.stale_snapshots():
            self._remove(lv.full_name)
            removed.append(lv.full_name)
        return removed

    def _remove(self, full_name: str) -> None:
        r = self._run("lvremove", "-f", full_name)
        if r.returncode != 0:
            raise SnapshotError(f"lvremove -f {full_name} failed ({r.returncode}): {r.stderr.strip()}")

    @contextmanager
    def snapshot(self, source: str) -> Iterator[Snapshot]:
        origin = self.logical_volume(source)
        if origin is None:
            raise SnapshotError(f"{source} is not an LVM logical volume")
        size = snapshot_size(origin.size, self.extent_size(origin.vg))
        r = self._run("lvcreate", "-s", "-L", f"{size}b", "-n", self.snap_name, origin.full_name)
        if r.returncode != 0:
            lines = [ln.strip() for ln in r.stderr.strip().splitlines() if ln.strip()]
            reason = f"lvcreate -s failed ({r.returncode}): {lines[-2] if len(lines) > 1 else ''.join(lines)}"
            if not self.fallback_to_live:
                raise SnapshotError(f"{origin.full_name}: {reason}")
            with NoSnapshotProvider(self.on_event, reason).snapshot(source) as live:
                yield live
            return
        full = f"{origin.vg}/{self.snap_name}"
        try:
            yield Snapshot(f"/dev/{origin.vg}/{self.snap_name}", source, self.name, full)
        except BaseException as e:
            try:
                self._remove(full)
            except SnapshotError as cleanup:
                e.add_note(str(cleanup))
            raise
        self._remove(full)


__all__ = ["PREFIX", "LogicalVolume", "LvmSnapshotProvider", "snapshot_name", "snapshot_size"]
