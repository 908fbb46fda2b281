"""The image engine's run contract: typed options, events for each stage, stall detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.engines.disk_image import MAX_PARALLEL, ImageBackupOptions, StallDetector
from e3backup.errors import UsageError
from e3backup.events import CODES, EventCode, Level

from .conftest import MiB, backup

TOTAL = 1 << 30  # 1 GiB: the tail is the last 128 MiB (more than 1 %)


def test_a_stream_without_progress_before_the_tail_gives_stalled_once_per_spell() -> None:
    now = [0.0]
    d = StallDetector(TOTAL, clock=lambda: now[0], stall_after=30)
    assert d.observe(100 * MiB) is None
    now[0] = 29.0
    assert d.observe(100 * MiB) is None  # not yet
    now[0] = 31.0
    e = d.observe(100 * MiB)
    assert e is not None and e.code is EventCode.DISK_IMAGE_STALLED
    assert e.details["bytes_done"] == 100 * MiB and e.details["stall_seconds"] == 30
    now[0] = 500.0
    assert d.observe(100 * MiB) is None  # said once per quiet spell
    assert d.observe(101 * MiB) is None  # progress starts a new spell
    now[0] = 531.0
    assert d.observe(101 * MiB).code is EventCode.DISK_IMAGE_STALLED  # type: ignore[union-attr]


def test_stall_events_are_suppressed_in_the_tail_where_finalizing_events_speak() -> None:
    now = [0.0]
    d = StallDetector(TOTAL, clock=lambda: now[0], slow_after=60, stalled_after=300, stall_after=30)
    tail = TOTAL - 100 * MiB  # inside the last 128 MiB
    assert d.observe(tail) is None
    now[0] = 59.0
    assert d.observe(tail) is None  # no DISK_IMAGE_STALLED at 30 s in the tail
    now[0] = 61.0
    assert d.observe(tail).code is EventCode.DISK_IMAGE_FINALIZING_SLOW  # type: ignore[union-attr]
    assert CODES[EventCode.DISK_IMAGE_STALLED].level is Level.WARNING


def test_options_are_typed_and_errors_name_the_setting_not_a_flag() -> None:
    assert MAX_PARALLEL == 64  # the policy's range of parallel_disk_reads (api.jobs.Policy)
    assert ImageBackupOptions("x", parallel=64).parallel == 64
    with pytest.raises(UsageError, match="parallel disk reads must be between 1 and 64") as e:
        ImageBackupOptions("x", parallel=65)
    assert "--" not in str(e.value)
    with pytest.raises(UsageError, match="read plan must be one of auto, full") as e:
        ImageBackupOptions("x", read_plan="used")
    assert "--" not in str(e.value)
    from pydantic import ValidationError

    from e3backup.api.jobs import Policy

    assert Policy(parallel_disk_reads=MAX_PARALLEL).parallel_disk_reads == MAX_PARALLEL  # the server agrees
    with pytest.raises(ValidationError):
        Policy(parallel_disk_reads=MAX_PARALLEL + 1)


def test_stage_events_and_fewer_readers_than_asked_are_said(repo_path: Path, repo: object, tmp_path: Path) -> None:
    path = tmp_path / "small.raw"
    path.write_bytes(b"\x01" * (2 * MiB))
    run = backup(repo_path, path, chunk_size=MiB, parallel=8)
    codes = [c for c in run.codes() if c.value.startswith(("REPOSITORY_", "DISK_IMAGE_STREAM"))]
    assert codes == [
        EventCode.DISK_IMAGE_STREAM_START,
        EventCode.REPOSITORY_SNAPSHOT_STARTED,
        EventCode.REPOSITORY_INDEX_WRITTEN,
        EventCode.REPOSITORY_SNAPSHOT_SAVED,
        EventCode.DISK_IMAGE_STREAM_COMPLETED,
    ]
    start = next(e for e in run.events if e.code is EventCode.DISK_IMAGE_STREAM_START)
    assert (start.details["readers"], start.details["parallel_disk_reads"]) == (2, 8)
    assert "8 asked, only 2 chunks to read" in start.message
    saved = next(e for e in run.events if e.code is EventCode.REPOSITORY_SNAPSHOT_SAVED)
    assert saved.details["snapshot_id"] == run.result.snapshot_id
