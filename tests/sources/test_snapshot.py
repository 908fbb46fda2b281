"""Snapshot providers: LVM against the recorded-lvm2 double, none, and auto selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.events import Event, EventCode
from e3backup.sources.errors import SnapshotError
from e3backup.sources.snapshot.lvm import LvmSnapshotProvider, snapshot_name, snapshot_size
from e3backup.sources.snapshot.none import NoSnapshotProvider
from e3backup.sources.snapshot.select import is_device_mapper, select_provider

from .lvmdouble import Lv, Lvm2Double, recording

LV_ARGS = [
    "--reportformat",
    "json",
    "-o",
    "lv_name,vg_name,lv_path,lv_size,origin,lv_attr",
    "--units",
    "b",
    "--nosuffix",
]


def double(**kw: bool) -> Lvm2Double:
    lvs = [
        Lv("root", "e3testvg", 104857600, attr="-wi-XX----"),
        Lv("e3backup-snap-crashed1", "e3testvg", 8388608, attr="-wi-XX----"),
    ]
    return Lvm2Double({"e3testvg": 4194304}, lvs, **kw)


def test_double_speaks_exactly_like_lvm2() -> None:
    d = double()
    assert d.run(["lvs", *LV_ARGS]).stdout == recording("lvs_two_stdout.txt")
    assert d.run(["lvs", *LV_ARGS, "e3testvg/root"]).stdout == recording("lvs_all_stdout.txt")
    vgs = [
        "vgs",
        "--reportformat",
        "json",
        "-o",
        "vg_name,vg_extent_size",
        "--units",
        "b",
        "--nosuffix",
        "e3testvg",
    ]
    assert d.run(vgs).stdout == recording("vgs_stdout.txt")
    r = d.run(["lvs", *LV_ARGS, "/dev/loop0"])
    assert (r.returncode, r.stdout, r.stderr) == (
        5,
        recording("lvs_notlv_stdout.txt"),
        recording("lvs_notlv_stderr.txt"),
    )
    assert d.run(["lvremove", "-f", "e3testvg/e3backup-snap-crashed1"]).stdout == recording(
        "lvremove_stdout.txt"
    )
    assert d.run(["lvremove", "-f", "e3testvg/nosuch"]).stderr == recording("lvremove_missing_stderr.txt")


def test_snapshot_size_is_five_percent_in_whole_extents() -> None:
    assert snapshot_size(104857600, 4194304) == 8388608  # 5 MiB -> 2 extents
    assert snapshot_size(80 * 4194304, 4194304) == 4 * 4194304
    assert snapshot_size(1, 4194304) == 4194304
    assert snapshot_name("run 42/a") == "e3backup-snap-run-42-a"


def test_snapshot_lifecycle() -> None:
    d = double()
    lvm = LvmSnapshotProvider(d, "r1")
    with lvm.snapshot("/dev/e3testvg/root") as snap:
        assert snap.device_path == "/dev/e3testvg/e3backup-snap-r1" and snap.provider == "lvm"
        assert any(lv.name == "e3backup-snap-r1" and lv.origin == "root" for lv in d.lvs)
    assert [c[0] for c in d.calls] == ["lvs", "vgs", "lvcreate", "lvremove"]
    assert d.calls[2] == ["lvcreate", "-s", "-L", "8388608b", "-n", "e3backup-snap-r1", "e3testvg/root"]
    assert d.calls[3] == ["lvremove", "-f", "e3testvg/e3backup-snap-r1"]
    assert not any(lv.name == "e3backup-snap-r1" for lv in d.lvs)


def test_snapshot_removed_when_the_backup_fails() -> None:
    d = double()
    with (
        pytest.raises(RuntimeError, match="upload failed"),
        LvmSnapshotProvider(d, "r2").snapshot("e3testvg/root"),
    ):
        raise RuntimeError("upload failed")
    assert d.calls[-1] == ["lvremove", "-f", "e3testvg/e3backup-snap-r2"]
    assert not any(lv.name == "e3backup-snap-r2" for lv in d.lvs)


def test_failed_removal_is_reported_without_hiding_the_first_error() -> None:
    d = double(lvremove_fails=True)
    with pytest.raises(RuntimeError) as e, LvmSnapshotProvider(d, "r3").snapshot("e3testvg/root"):
        raise RuntimeError("boom")
    assert any("lvremove -f e3testvg/e3backup-snap-r3 failed" in n for n in e.value.__notes__)
    with (
        pytest.raises(SnapshotError, match="lvremove"),
        LvmSnapshotProvider(d, "r4").snapshot("e3testvg/root"),
    ):
        pass


def test_stale_snapshots_from_a_crashed_run_are_removed() -> None:
    d = double()
    lvm = LvmSnapshotProvider(d, "r5")
    assert [lv.full_name for lv in lvm.stale_snapshots()] == ["e3testvg/e3backup-snap-crashed1"]
    assert lvm.remove_stale() == ["e3testvg/e3backup-snap-crashed1"]
    assert [lv.name for lv in d.lvs] == ["root"]
    assert lvm.remove_stale() == []


def test_lvcreate_failure_strict_or_live() -> None:
    strict = LvmSnapshotProvider(double(lvcreate_fails=True), "r6")
    with pytest.raises(SnapshotError, match="device-mapper target"), strict.snapshot("/dev/e3testvg/root"):
        pass
    events: list[Event] = []
    d = double(lvcreate_fails=True)
    with LvmSnapshotProvider(d, "r6", events.append, fallback_to_live=True).snapshot(
        "/dev/e3testvg/root"
    ) as snap:
        assert snap.device_path == "/dev/e3testvg/root" and snap.provider == "none"
    assert [e.code for e in events] == [EventCode.DISK_IMAGE_SNAPSHOT_NONE]
    assert "lvcreate -s failed (3)" in events[0].message
    assert "lvremove" not in [c[0] for c in d.calls]


def test_not_a_logical_volume() -> None:
    lvm = LvmSnapshotProvider(double(), "r7")
    assert lvm.logical_volume("/dev/loop0") is None
    with pytest.raises(SnapshotError, match="not an LVM logical volume"), lvm.snapshot("/dev/loop0"):
        pass


def test_none_provider_warns() -> None:
    events: list[Event] = []
    with NoSnapshotProvider(events.append).snapshot("/dev/sdb") as snap:
        assert snap.device_path == "/dev/sdb"
    assert [e.code for e in events] == [EventCode.DISK_IMAGE_SNAPSHOT_NONE]


def test_auto_selection(tmp_path: Path) -> None:
    have_all = lambda tool: f"/usr/sbin/{tool}"  # noqa: E731
    assert select_provider("/dev/e3testvg/root", runner=double(), which=have_all).name == "lvm"
    assert select_provider("/dev/loop0", runner=double(), which=have_all).name == "none"
    p = select_provider("/dev/e3testvg/root", runner=double(), which=lambda _t: None)
    assert p.name == "none" and "lvm2 tools not installed" in p.reason  # type: ignore[attr-defined]
    assert select_provider("/dev/e3testvg/root", mode="none").name == "none"
    assert select_provider("/dev/sdb", mode="lvm", runner=double()).name == "lvm"
    with pytest.raises(ValueError):
        select_provider("/dev/sdb", mode="vss")
    # device-mapper detection through sysfs: a dm-N node has a dm/ directory
    (tmp_path / "class" / "block" / "dm-3" / "dm").mkdir(parents=True)
    (tmp_path / "dev").mkdir()
    node = tmp_path / "dev" / "dm-3"
    node.touch()
    assert is_device_mapper(str(node), tmp_path)
    assert not is_device_mapper("/dev/loop0")
