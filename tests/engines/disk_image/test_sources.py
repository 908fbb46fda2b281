"""The engine over its sources: read errors from a real FUSE file, LVM snapshots via the double."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from e3backup.agent.image_options import backup_settings
from e3backup.api.jobs import Policy
from e3backup.errors import Cancelled as BackupCancelled
from e3backup.errors import E3Error
from e3backup.events import EventCode
from e3backup.sources.device import Device, open_device
from e3backup.sources.errors import ReadError
from e3backup.sources.snapshot.lvm import LvmSnapshotProvider
from tests.helpers import restic
from tests.sources.lvmdouble import Lv, Lvm2Double

from .conftest import MiB, backup, counting_opener, dump, open_repo

pytestmark = pytest.mark.restic

BAD = (5 * MiB + 8192, 4096)  # inside a random 1 MiB region of the mixed image


@pytest.fixture
def faulty(image: tuple[Path, bytes]):  # type: ignore[no-untyped-def]
    if os.geteuid() != 0 or shutil.which("fusermount") is None or not os.path.exists("/dev/fuse"):
        pytest.skip("needs FUSE (root, /dev/fuse, fusermount)")
    pytest.importorskip("fuse")
    from tests.sources.faultyfuse import faulty_image

    path, data = image
    with faulty_image(path, [BAD]) as served:
        yield served, data


def test_best_effort_zero_fills_and_reports_the_bad_span(repo_path: Path, repo: object, faulty) -> None:  # type: ignore[no-untyped-def]
    served, data = faulty
    run = backup(repo_path, served)
    r = run.result
    assert r.recovered_bytes == BAD[1]
    rec = [e for e in run.events if e.code is EventCode.DISK_IMAGE_READ_RECOVERED]
    assert [(e.details["offset"], e.details["length"]) for e in rec] == [BAD]
    assert rec[0].level is None and rec[0].effective_level().value == "warning"
    expected = bytearray(data)
    expected[BAD[0] : BAD[0] + BAD[1]] = bytes(BAD[1])
    assert dump(repo_path, "disk.img") == bytes(expected)
    assert json.loads(dump(repo_path, "layout.json"))["image"]["recovered"] == [list(BAD)]
    assert r.event_counts["DISK_IMAGE_READ_RECOVERED"] == 1


def test_strict_fails_on_the_first_error_with_the_offset(repo_path: Path, repo: object, faulty) -> None:  # type: ignore[no-untyped-def]
    served, _ = faulty
    events: list = []  # type: ignore[type-arg]
    with pytest.raises(ReadError):
        backup(repo_path, served, strict_read_errors=True, events=events)
    failed = [e for e in events if e.code is EventCode.DISK_IMAGE_FAILED]
    assert (
        len(failed) == 1
        and failed[0].details["offset"] <= BAD[0] < failed[0].details["offset"] + failed[0].details["length"]
    )
    assert EventCode.DISK_IMAGE_STREAM_COMPLETED not in [e.code for e in events]
    assert open_repo(repo_path).snapshots() == []
    restic(repo_path, "check")


def test_strict_from_the_environment_unless_the_policy_says_otherwise(repo_path: Path, repo: object, faulty) -> None:  # type: ignore[no-untyped-def]
    served, _ = faulty
    env = {"AGENT_DISK_IMAGE_STRICT_READ_ERRORS": "true"}
    with pytest.raises(ReadError):
        backup(repo_path, served, **backup_settings(Policy(), env))
    r = backup(repo_path, served, **backup_settings(Policy(disk_image_strict_read_errors=False), env)).result
    assert r.recovered_bytes == BAD[1]


# LVM (recorded lvm2 double: this kernel has no device-mapper) -----------------------------------

VG, LV = "e3testvg", "root"


def lvm_setup(image: Path, fail_open: bool = False) -> tuple[Lvm2Double, LvmSnapshotProvider, object]:
    size = image.stat().st_size
    d = Lvm2Double(
        {VG: 4 * MiB},
        [Lv(LV, VG, size), Lv("e3backup-snap-crashed1", VG, 4 * MiB, origin=LV, attr="swi-a-s---")],
    )
    provider = LvmSnapshotProvider(d, "run1")
    snap_dev = f"/dev/{VG}/e3backup-snap-run1"

    def opener(path: str) -> Device:
        assert path == snap_dev, path  # the snapshot is read, never the live volume
        if fail_open:
            raise OSError(5, "Input/output error")
        return open_device(image)

    return d, provider, opener


def snapshot_lvs(d: Lvm2Double) -> list[str]:
    return [lv.name for lv in d.lvs if lv.name.startswith("e3backup-snap-")]


def test_lvm_snapshot_is_read_and_removed_and_stale_ones_go_first(
    repo_path: Path, repo: object, image: tuple[Path, bytes]
) -> None:
    path, data = image
    d, provider, opener = lvm_setup(path)
    run = backup(repo_path, f"/dev/{VG}/{LV}", provider=provider, opener=opener)
    verbs = [" ".join(c[:2]) + (" " + c[-1] if c[0] == "lvremove" else "") for c in d.calls]
    assert verbs.index(f"lvremove -f {VG}/e3backup-snap-crashed1") < verbs.index("lvcreate -s")
    assert verbs[-1] == f"lvremove -f {VG}/e3backup-snap-run1"
    assert snapshot_lvs(d) == []
    assert run.result.device == f"/dev/{VG}/e3backup-snap-run1" and run.result.snapshot_provider == "lvm"
    assert run.result.file_name == "root.img"
    assert dump(repo_path, "root.img") == data
    snaps = json.loads(restic(repo_path, "snapshots", "--json").stdout)
    assert snaps[0]["paths"] == [f"/dev/{VG}/{LV}"] and f"source:/dev/{VG}/{LV}" in snaps[0]["tags"]


def test_lvm_snapshot_removed_when_the_run_fails(repo_path: Path, repo: object, image: tuple[Path, bytes]) -> None:
    path, _ = image
    d, provider, opener = lvm_setup(path, fail_open=True)
    events: list = []  # type: ignore[type-arg]
    with pytest.raises(E3Error, match="cannot open"):
        backup(repo_path, f"/dev/{VG}/{LV}", provider=provider, opener=opener, events=events)
    assert d.calls[-1] == ["lvremove", "-f", f"{VG}/e3backup-snap-run1"]
    assert snapshot_lvs(d) == []
    assert events[-1].code is EventCode.DISK_IMAGE_FAILED


def test_lvm_snapshot_removed_on_cancel(repo_path: Path, repo: object, image: tuple[Path, bytes]) -> None:
    import threading

    path, _ = image
    d, provider, _ = lvm_setup(path)
    cancel = threading.Event()
    inner, _ = counting_opener(lambda n: cancel.set() if n >= 3 else None)
    with pytest.raises(BackupCancelled):
        backup(
            repo_path,
            f"/dev/{VG}/{LV}",
            provider=provider,
            opener=lambda p: inner(str(path)),
            cancel=cancel,
            chunk_size=MiB,
        )
    assert d.calls[-1] == ["lvremove", "-f", f"{VG}/e3backup-snap-run1"]
    assert snapshot_lvs(d) == []
    assert open_repo(repo_path).snapshots() == []
