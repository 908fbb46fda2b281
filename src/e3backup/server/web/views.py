"""What the pages show of runs, events and disks, as plain dicts of display strings.

The run page renders these on the server and the live stream sends the same dicts, so the
browser's updates use exactly the server's wording and units.
"""

from __future__ import annotations

from typing import Any

from e3backup.api.common import RunStatus
from e3backup.api.recovery import RunEventView
from e3backup.server.db.models import Run
from e3backup.server.services.runs import FINAL
from e3backup.server.web import format as fmt

STATUS_LABELS = {
    RunStatus.QUEUED.value: "Queued",
    RunStatus.RUNNING.value: "Running",
    RunStatus.SUCCESS.value: "Success",
    RunStatus.WARNING.value: "Warning",
    RunStatus.FAILED.value: "Failed",
    RunStatus.CANCELLED.value: "Cancelled",
}
BACKUP_TYPE_LABELS = {"full": "Full", "incremental": "Incremental"}


def run_badge(run: Run) -> dict[str, Any]:
    """The part of :func:`run_display` a list's "last run" cell shows (the jobs list has hundreds)."""
    return {
        "status": run.status,
        "status_label": STATUS_LABELS.get(run.status, run.status),
        "final": run.status in FINAL,
        "started": fmt.when(run.started_at),
        "finished": fmt.when(run.finished_at),
    }


def run_display(run: Run) -> dict[str, Any]:
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else None
    processed = fmt.size(run.bytes_processed)
    return {
        "id": run.id,
        "status": run.status,
        "status_label": STATUS_LABELS.get(run.status, run.status),
        "final": run.status in FINAL,
        "progress_pct": run.progress_pct,
        "progress": fmt.percent(run.progress_pct),
        "backup_type": BACKUP_TYPE_LABELS.get(run.backup_type or "", "—"),
        "bytes": processed if run.bytes_total is None else f"{processed} of {fmt.size(run.bytes_total)}",
        "bytes_uploaded": fmt.size(run.bytes_uploaded),
        "files": "—"
        if run.files_processed is None
        else f"{run.files_processed:,}" + ("" if run.files_total is None else f" of {run.files_total:,}"),
        "speed": fmt.speed(run.speed_bytes_per_sec),
        "eta": "—" if run.eta_seconds is None or run.status in FINAL else fmt.duration(run.eta_seconds),
        "started": fmt.when(run.started_at),
        "started_iso": run.started_at.isoformat() if run.started_at else "",
        "finished": fmt.when(run.finished_at),
        "duration": fmt.duration(duration),
        "snapshot_id": run.snapshot_id or "—",
        "error_summary": run.error_summary or "",
        "cancel_requested": run.cancel_requested,
        "counts": _counts(run.summary or {}),
    }


def _counts(summary: dict[str, Any]) -> dict[str, str]:
    """What the run did, from the engine's counters: files new/changed/unchanged, bytes read,
    uploaded, deduplicated (read but already in the repository)."""
    if not summary:
        return {}
    read = int(summary.get("bytes_read") or summary.get("total_bytes_processed") or 0)
    added = int(summary.get("bytes_added") or 0)
    out = {
        "bytes_read": fmt.size(read),
        "bytes_uploaded": fmt.size(int(summary.get("bytes_stored") or 0)),
        "bytes_deduplicated": fmt.size(max(read - added, 0)),
    }
    if "files_new" in summary:
        out["files"] = (f"{int(summary.get('files_new', 0)):,} new, {int(summary.get('files_changed', 0)):,} changed, "
                        f"{int(summary.get('files_unmodified', 0)):,} unchanged")
    if "chunks_total" in summary:
        n = {k: int(summary.get(f"chunks_{k}", 0)) for k in ("new", "known", "reused", "zero")}
        out["chunks"] = f"{n['new']:,} new, {n['known']:,} known, {n['reused']:,} reused, {n['zero']:,} zero"
    return out


def event_display(event: RunEventView) -> dict[str, Any]:
    return {
        "id": event.id,
        "time": event.ts.strftime("%H:%M:%S") if event.ts else "",
        "when": fmt.when(event.ts),
        "level": event.level.value,
        "code": event.code,
        "message": event.message,
        "meaning": event.meaning or "",
    }


def disk_choices(disks: dict[str, Any] | None) -> list[dict[str, str]]:
    """The disk image wizard's choices: each whole disk, then each volume (on a disk or not)."""
    report = disks or {}
    choices: list[dict[str, str]] = []
    seen: set[str] = set()

    def volume_label(v: dict[str, Any]) -> str:
        size = fmt.size(v["size_bytes"]) if v.get("size_bytes") else ""
        bits = [b for b in (v.get("label"), v.get("filesystem"), size) if b]
        where = f" at {v['mount_point']}" if v.get("mount_point") else ""
        return f"{v['path']}{where}" + (f" ({', '.join(bits)})" if bits else "")

    for disk in report.get("disks", []):
        if disk.get("path") and disk["path"] not in seen:
            seen.add(disk["path"])
            model = f"{disk['model']}, " if disk.get("model") else ""
            choices.append(
                {
                    "value": disk["path"],
                    "label": f"{disk['path']} (whole disk: {model}{fmt.size(disk.get('size_bytes'))})",
                }
            )
        for v in disk.get("volumes", []):
            if v.get("path") and v["path"] not in seen:
                seen.add(v["path"])
                choices.append({"value": v["path"], "label": volume_label(v)})
    for v in report.get("volumes", []):
        if v.get("path") and v["path"] not in seen:
            seen.add(v["path"])
            choices.append({"value": v["path"], "label": volume_label(v)})
    return choices


__all__ = ["BACKUP_TYPE_LABELS", "STATUS_LABELS", "disk_choices", "event_display", "run_badge", "run_display"]
