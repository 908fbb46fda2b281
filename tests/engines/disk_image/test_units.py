"""Pure parts of the engine: the grid, planned pieces per chunk, zero blobs, the stall detector."""

from __future__ import annotations

import hashlib

import pytest

from e3backup.agent.image_options import backup_settings
from e3backup.api.jobs import Policy
from e3backup.engines.disk_image import ImageBackupOptions, StallDetector, parse_size
from e3backup.engines.disk_image.chunker import ChunkGrid, PlanCursor, ZeroBlobs
from e3backup.engines.disk_image.options import auto_chunk_size
from e3backup.errors import UsageError
from e3backup.events import EventCode
from e3backup.sources.extents import ExtentList
from e3backup.sources.stored_image import image_name

MiB = 1 << 20


def test_grid_and_short_last_chunk() -> None:
    g = ChunkGrid(10 * MiB + 512, 4 * MiB)
    assert g.count == 3
    assert [g.span(i) for i in range(3)] == [(0, 4 * MiB), (4 * MiB, 4 * MiB), (8 * MiB, 2 * MiB + 512)]
    assert g.bytes_of(0, 3) == 10 * MiB + 512 and g.bytes_of(1, 2) == 4 * MiB
    z = ZeroBlobs(g)
    assert z.id_for(2 * MiB + 512) == hashlib.sha256(bytes(2 * MiB + 512)).digest()
    assert z.is_zero(bytearray(4 * MiB)) and not z.is_zero(bytearray(b"\0" * (4 * MiB - 1) + b"\1"))
    assert z.is_zero(memoryview(bytearray(4 * MiB))[:100])


def test_plan_cursor_clips_pieces_to_the_chunk() -> None:
    c = PlanCursor(ExtentList([(0, 100), (4000, 200), (8100, 10_000)]))
    assert list(c.within(0, 4096)) == [(0, 100), (4000, 96)]
    assert list(c.within(4096, 4096)) == [(4096, 104), (8100, 92)]
    assert list(c.within(20_000, 4096)) == []


def test_stall_detector_is_quiet_outside_the_tail() -> None:
    now = [0.0]
    total = 100 << 30  # 100 GiB: the tail is the last 1 GiB (1 %), more than 128 MiB
    d = StallDetector(total, clock=lambda: now[0], slow_after=60, stalled_after=300)
    assert d.tail_start == total - (1 << 30)
    assert d.observe(10 << 30) is None
    now[0] = 10_000.0  # hours without progress in the middle: not this detector's business
    assert d.observe(10 << 30) is None
    assert d.idle_for == 10_000.0


def test_stall_detector_reports_slow_then_stalled_in_the_tail_once_each() -> None:
    now = [0.0]
    total = 1 << 30  # 1 GiB: 1 % is 10 MiB, so the 128 MiB floor applies
    d = StallDetector(total, clock=lambda: now[0], slow_after=60, stalled_after=300)
    assert d.tail_start == total - (128 << 20)
    assert d.observe(total - (100 << 20)) is None
    now[0] = 59.0
    assert d.observe(total - (100 << 20)) is None
    now[0] = 61.0
    e = d.observe(total - (100 << 20))
    assert e is not None and e.code is EventCode.DISK_IMAGE_FINALIZING_SLOW
    assert e.details["idle_seconds"] == 61.0
    now[0] = 200.0
    assert d.observe(total - (100 << 20)) is None  # said once
    now[0] = 301.0
    e = d.observe(total - (100 << 20))
    assert e is not None and e.code is EventCode.DISK_IMAGE_FINALIZING_STALLED
    now[0] = 1000.0
    assert d.observe(total - (100 << 20)) is None
    # progress resets the spell; at 100 % (flushing the last packs) it can warn again
    assert d.observe(total) is None
    now[0] = 1061.0
    e = d.observe(total)
    assert e is not None and e.code is EventCode.DISK_IMAGE_FINALIZING_SLOW


def test_options_policy_flags_and_sizes() -> None:
    # the policy is resolved at the agent's edge (``agent.image_options``), not in the engine
    assert ImageBackupOptions("x").parallel == 2
    assert ImageBackupOptions("x", **backup_settings(Policy(parallel_disk_reads=6), {})).parallel == 6
    assert (
        ImageBackupOptions("x", **{**backup_settings(Policy(parallel_disk_reads=6), {}), "parallel": 3}).parallel == 3
    )
    env_strict = {"AGENT_DISK_IMAGE_STRICT_READ_ERRORS": "1"}
    assert ImageBackupOptions("x", **backup_settings(Policy(), env_strict)).strict_read_errors is True
    strict_off = Policy(disk_image_strict_read_errors=False)
    assert ImageBackupOptions("x", **backup_settings(strict_off, env_strict)).strict_read_errors is False
    assert ImageBackupOptions("x", strict_read_errors=True).strict_read_errors is True
    assert parse_size("4M") == parse_size("4MiB") == 4 * MiB and parse_size("512k") == 512 * 1024
    with pytest.raises(UsageError):
        ImageBackupOptions("x", chunk_size=1000)
    # a new chain's chunk size: 1 MiB while the disk's content IDs stay within 512 Ki (a ~35 MB tree)
    GiB = 1 << 30
    assert ImageBackupOptions("x").chunk_size is None  # the parent's, or the size below
    assert [auto_chunk_size(n) for n in (64 * MiB, 8 * GiB, 512 * GiB)] == [MiB, MiB, MiB]
    assert [auto_chunk_size(n) for n in (512 * GiB + 1, 1024 * GiB, 1024 * GiB + 1, 16384 * GiB)] == [
        2 * MiB, 2 * MiB, 4 * MiB, 4 * MiB,
    ]  # fmt: skip
    with pytest.raises(UsageError):
        parse_size("lots")
    assert image_name("/dev/sda") == "sda.img" and image_name("/srv/vm/disk.img") == "disk.img"
    assert image_name("/dev/vg0/root") == "root.img"


def test_the_memory_budget_lowers_the_queue_then_savers_then_readers_and_refuses_below_one() -> None:
    from e3backup.budget import MemoryBudget
    from e3backup.engines.disk_image.sizing import image_sizing

    MiB = 1 << 20
    chunk, pack = 4 * MiB, 16 * MiB
    roomy = image_sizing(MemoryBudget(1024 * MiB), chunk, readers=48, savers=2, queue_depth=8, connections=4,
                         pack_size=pack)
    assert (roomy.readers, roomy.savers, roomy.queue_depth) == (48, 2, 8)
    tight = image_sizing(MemoryBudget(256 * MiB), chunk, readers=48, savers=2, queue_depth=8, connections=4,
                         pack_size=pack)
    assert (tight.savers, tight.queue_depth) == (1, 1) and 1 <= tight.readers < 48
    assert tight.bytes(chunk, pack) <= MemoryBudget(256 * MiB).work < tight.bytes(chunk, pack) + chunk
    with pytest.raises(UsageError, match=r"memory budget 40 MiB is too small for this image backup: it needs"):
        image_sizing(MemoryBudget(40 * MiB), chunk, readers=1, savers=1, queue_depth=1, connections=1, pack_size=pack)
