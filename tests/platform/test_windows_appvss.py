"""Application-consistent VSS (``sources.snapshot.appvss``) driven through ``FakeVss``, a double of
``IVssBackupComponents`` that answers with the codes, states and structures Microsoft documents
(the documents are named in tests/platform/vss_double.py: "Overview of Processing a Backup Under
VSS", the IVssBackupComponents method pages, "IVssAsync::QueryStatus", "VSS_WRITER_STATE
enumeration", "VSS_COMPONENTINFO structure", "VSS_SNAPSHOT_CONTEXT")."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.events import Event, EventCode, Level
from e3backup.platform.windows.vss import Journal, ShadowCopies
from e3backup.platform.windows.vssapi import (
    VSS_BT_COPY,
    VSS_E_UNEXPECTED_PROVIDER_ERROR,
    VSS_E_WRITERERROR_NONRETRYABLE,
    VSS_E_WRITERERROR_TIMEOUT,
    VSS_WS_FAILED_AT_FREEZE,
    VSS_WS_FAILED_AT_PREPARE_BACKUP,
)
from e3backup.sources.errors import SnapshotError
from e3backup.sources.snapshot.appvss import AppConsistentVss, AppVssSnapshotProvider, VssSettings
from e3backup.sources.snapshot.vss import VssSnapshotProvider
from tests.platform.vss_double import REGISTRY_ID, SQL_ID, FakeBackupComponents, FakeVss
from tests.platform.win32_double import FakePowerShell


def _provider(vss: FakeVss, tmp_path: Path, **settings: object) -> tuple[
    AppVssSnapshotProvider, list[Event], list[float], FakePowerShell
]:
    events: list[Event] = []
    pauses: list[float] = []
    shell = FakePowerShell()
    crash = VssSnapshotProvider(ShadowCopies(shell, Journal(tmp_path / "j.json")), None, events.append)
    app = AppConsistentVss(vss.create, VssSettings(consistency="application", **settings),  # type: ignore[arg-type]
                           events.append, clock=vss.clock, pause=pauses.append)
    return AppVssSnapshotProvider(app, crash, None, events.append), events, pauses, shell


def _all_released(vss: FakeVss) -> None:
    assert vss.live == {}, "a shadow copy outlived the run"
    assert all(o.released for o in vss.objects), "an IVssBackupComponents was not released"
    assert all(a.released for a in vss.asyncs), "an IVssAsync was not released"


def test_app_consistent_snapshot_follows_the_documented_sequence(tmp_path: Path) -> None:
    vss = FakeVss()
    provider, events, _pauses, shell = _provider(vss, tmp_path)
    with provider.snapshot("C:") as snap:
        assert snap.device_path.startswith("\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy")
        assert (snap.consistency, snap.warnings, snap.provider) == ("application", (), "vss")
        assert len(vss.live) == 1  # the copy exists while the run reads it
    _all_released(vss)
    assert shell.scripts == []  # no WMI copy: the writers' set was used
    [bc] = vss.objects
    assert bc.names() == [
        "InitializeForBackup", "SetContext", "SetBackupState", "GatherWriterMetadata", "GetWriterMetadata",
        "AddComponent", "AddComponent", "AddComponent", "StartSnapshotSet", "AddToSnapshotSet", "PrepareForBackup",
        "GatherWriterStatus", "GetWriterStatus", "DoSnapshotSet", "GatherWriterStatus", "GetWriterStatus",
        "GetSnapshotProperties", "SetBackupSucceeded", "SetBackupSucceeded", "SetBackupSucceeded", "BackupComplete",
        "GatherWriterStatus", "GetWriterStatus", "DeleteSnapshots", "Release",
    ]
    assert ("SetBackupState", True, False, VSS_BT_COPY) in bc.calls
    assert ("AddToSnapshotSet", "C:\\") in bc.calls
    added = [(c[2], c[5]) for c in bc.calls if c[0] == "AddComponent"]
    # SQL Server's databases and the registry live on C:; Exchange's only on D:, so it is left out
    assert added == [(SQL_ID, "master"), (SQL_ID, "SalesDb"), (REGISTRY_ID, "Registry")]
    assert all(c[4] is True for c in bc.calls if c[0] == "SetBackupSucceeded")
    created = [e for e in events if e.code == EventCode.VSS_SNAPSHOT_CREATED]
    assert created[0].details["consistency"] == "application"
    assert created[0].details["writers"] == ["Registry Writer", "SqlServerWriter"]


def test_a_writer_failed_at_freeze_is_a_warning_naming_the_writer(tmp_path: Path) -> None:
    vss = FakeVss(states={("SqlServerWriter", "DoSnapshotSet"): (VSS_WS_FAILED_AT_FREEZE, VSS_E_WRITERERROR_TIMEOUT)})
    provider, events, _p, _s = _provider(vss, tmp_path)
    with provider.snapshot("C:") as snap:
        assert snap.consistency == "application"
        assert len(snap.warnings) == 1 and "SqlServerWriter" in snap.warnings[0]
    failed = [e for e in events if e.code == EventCode.VSS_WRITER_FAILED]
    assert len(failed) == 1 and failed[0].level == Level.WARNING
    message = failed[0].message
    assert "'SqlServerWriter'" in message and "VSS_WS_FAILED_AT_FREEZE" in message
    assert "VSS_E_WRITERERROR_TIMEOUT (0x800423F2)" in message and "crash-consistent" in message
    assert failed[0].details["state_name"] == "VSS_WS_FAILED_AT_FREEZE"
    [bc] = vss.objects
    succeeded = {c[3]: c[4] for c in bc.calls if c[0] == "SetBackupSucceeded"}
    assert succeeded == {"master": False, "SalesDb": False, "Registry": True}  # only the failed writer's
    _all_released(vss)


@pytest.mark.parametrize(("step", "state"), [
    ("PrepareForBackup", VSS_WS_FAILED_AT_PREPARE_BACKUP),
    ("DoSnapshotSet", VSS_WS_FAILED_AT_FREEZE),
])
def test_a_failed_writer_fails_the_snapshot_when_the_policy_says_fail(tmp_path: Path, step: str, state: int) -> None:
    vss = FakeVss(states={("Registry Writer", step): (state, VSS_E_WRITERERROR_NONRETRYABLE)})
    provider, events, _p, shell = _provider(vss, tmp_path, writer_failure="fail")
    refused = r"'Registry Writer' is in VSS_WS_FAILED_AT_\w+ after " + step
    with pytest.raises(SnapshotError, match=refused) as info, provider.snapshot("C:"):
        pytest.fail("nothing is read from a snapshot the policy refuses")
    assert "VSS_E_WRITERERROR_NONRETRYABLE" in str(info.value)
    codes = [e.code for e in events]
    assert EventCode.VSS_WRITER_FAILED in codes and EventCode.VSS_SNAPSHOT_FAILED in codes
    assert [e.level for e in events if e.code == EventCode.VSS_WRITER_FAILED] == [Level.ERROR]
    assert shell.scripts == []  # no crash-consistent fallback: the policy wants the writers
    [bc] = vss.objects
    assert "AbortBackup" in bc.names() and "BackupComplete" not in bc.names()
    _all_released(vss)


def test_snapshot_set_in_progress_is_retried(tmp_path: Path) -> None:
    vss = FakeVss(in_progress=2)
    provider, events, pauses, _s = _provider(vss, tmp_path, retry_wait=30.0)
    with provider.snapshot("C:") as snap:
        assert snap.consistency == "application"
    assert pauses == [30.0, 30.0]
    assert [e.code for e in events].count(EventCode.VSS_SNAPSHOT_RETRY) == 2
    assert len(vss.objects) == 3  # a fresh IVssBackupComponents per try, each released
    assert all(o.names()[-1] == "Release" for o in vss.objects)
    _all_released(vss)


def test_in_progress_past_the_retries_falls_back_to_a_crash_consistent_copy(tmp_path: Path) -> None:
    vss = FakeVss(in_progress=5)
    provider, events, pauses, shell = _provider(vss, tmp_path, in_progress_retries=1)
    with provider.snapshot("C:") as snap:
        assert snap.consistency == "crash"
        assert snap.device_path == shell.device_object(snap.name or "")  # the WMI copy
        assert "VSS_E_SNAPSHOT_SET_IN_PROGRESS" in snap.warnings[0]
    assert pauses == [60.0]
    assert EventCode.VSS_CONSISTENCY_FALLBACK in [e.code for e in events]
    assert shell.shadows == {}
    _all_released(vss)


def test_a_step_past_its_deadline_is_cancelled_and_everything_released(tmp_path: Path) -> None:
    vss = FakeVss(hang="DoSnapshotSet")
    provider, _events, _p, _s = _provider(vss, tmp_path, timeout=5.0, writer_failure="fail")
    with pytest.raises(SnapshotError, match="DoSnapshotSet did not finish within 5 s"), provider.snapshot("C:"):
        pass
    hung = [a for a in vss.asyncs if a.method == "DoSnapshotSet"]
    assert hung[0].cancelled and vss.now >= 5.0
    assert "AbortBackup" in vss.objects[0].names()
    _all_released(vss)


def test_a_failing_read_aborts_the_backup_and_releases_the_set(tmp_path: Path) -> None:
    vss = FakeVss()
    provider, _e, _p, _s = _provider(vss, tmp_path)
    with pytest.raises(RuntimeError, match="repository went away"), provider.snapshot("C:"):
        assert len(vss.live) == 1
        raise RuntimeError("the repository went away")
    names = vss.objects[0].names()
    assert names[-3:] == ["AbortBackup", "DeleteSnapshots", "Release"]
    assert "SetBackupSucceeded" not in names and "BackupComplete" not in names
    _all_released(vss)


def test_a_provider_error_is_named(tmp_path: Path) -> None:
    vss = FakeVss(fail={"DoSnapshotSet": VSS_E_UNEXPECTED_PROVIDER_ERROR})
    provider, events, _p, _s = _provider(vss, tmp_path, writer_failure="fail")
    named = r"DoSnapshotSet failed: VSS_E_UNEXPECTED_PROVIDER_ERROR \(0x8004230F\)"
    with pytest.raises(SnapshotError, match=named), provider.snapshot("C:"):
        pass
    assert events[-1].code == EventCode.VSS_SNAPSHOT_FAILED and events[-1].details["hresult"] == "0x8004230F"
    _all_released(vss)


def test_writers_left_out_by_name_and_id_are_disabled_before_gathering(tmp_path: Path) -> None:
    vss = FakeVss()
    provider, events, _p, _s = _provider(vss, tmp_path, exclude_writers=("sqlserverwriter", REGISTRY_ID.lower()))
    with provider.snapshot("C:"):
        pass
    discovery, bc = vss.objects  # names need the metadata of an object of their own
    assert discovery.names() == ["InitializeForBackup", "GatherWriterMetadata", "GetWriterMetadata", "Release"]
    names = bc.names()
    assert names.index("DisableWriterClasses") < names.index("GatherWriterMetadata")
    assert next(c for c in bc.calls if c[0] == "DisableWriterClasses")[1] == tuple(sorted([REGISTRY_ID, SQL_ID]))
    assert "AddComponent" not in names  # Exchange is on D:, the others are out
    created = next(e for e in events if e.code == EventCode.VSS_SNAPSHOT_CREATED)
    assert created.details["excluded_writers"] == ["SqlServerWriter", REGISTRY_ID.lower()]
    _all_released(vss)


def test_the_double_refuses_calls_out_of_order() -> None:
    """The double is a judge too: VSS_E_BAD_STATE for a call before its documented predecessor."""
    from e3backup.platform.windows.vssapi import VssComError

    bc = FakeBackupComponents(FakeVss())
    with pytest.raises(VssComError, match="VSS_E_BAD_STATE"):
        bc.start_snapshot_set()


def test_a_cancelled_run_ends_a_hung_step_and_the_retry_wait(tmp_path: Path) -> None:
    """The run's cancel (a service stop, a user's cancel) is seen between poll slices of a step
    and ends the wait between in-progress retries; everything is released either way."""
    import threading

    from e3backup.errors import Cancelled

    cancel = threading.Event()
    vss = FakeVss(hang="DoSnapshotSet")
    app = AppConsistentVss(vss.create, VssSettings(consistency="application"), clock=vss.clock, cancel=cancel)
    real_create = vss.create

    def create() -> FakeBackupComponents:
        bc = real_create()
        real_do = bc.do_snapshot_set

        def do_snapshot_set() -> object:
            op = real_do()
            cancel.set()  # while DoSnapshotSet hangs
            return op

        bc.do_snapshot_set = do_snapshot_set  # type: ignore[assignment,method-assign]
        return bc

    app.create = create
    with pytest.raises(Cancelled), app.snapshot_set(["C:"]):
        pass
    assert next(a for a in vss.asyncs if a.method == "DoSnapshotSet").cancelled
    assert vss.now < 600  # well before the step's deadline
    _all_released(vss)

    waiting = FakeVss(in_progress=5)
    cancel = threading.Event()

    def busy() -> FakeBackupComponents:
        bc = waiting.create()
        real_start = bc.start_snapshot_set

        def start_snapshot_set() -> str:
            cancel.set()  # cancelled while another set is in progress: the 60 s wait returns at once
            return real_start()

        bc.start_snapshot_set = start_snapshot_set  # type: ignore[method-assign]
        return bc

    app = AppConsistentVss(busy, VssSettings(consistency="application"), clock=waiting.clock, cancel=cancel)
    with pytest.raises(Cancelled), app.snapshot_set(["C:"]):
        pass
    assert len(waiting.objects) == 1 and waiting.in_progress == 4  # no second try
    _all_released(waiting)


def test_listing_the_writers_to_leave_out_failing_falls_back_with_a_named_event(tmp_path: Path) -> None:
    from e3backup.platform.windows.vssapi import E_ACCESSDENIED

    vss = FakeVss(fail={"GatherWriterMetadata": E_ACCESSDENIED})
    provider, events, _p, shell = _provider(vss, tmp_path, exclude_writers=("SqlServerWriter",))
    with provider.snapshot("C:") as snap:
        assert snap.consistency == "crash" and "E_ACCESSDENIED" in snap.warnings[0]
    fallback = next(e for e in events if e.code == EventCode.VSS_CONSISTENCY_FALLBACK)
    assert "listing the VSS writers to leave out" in fallback.message and fallback.details["hresult"] == "0x80070005"
    assert shell.shadows == {}
    _all_released(vss)


def test_no_vss_requester_on_this_machine_falls_back(tmp_path: Path) -> None:
    def missing() -> FakeBackupComponents:
        raise OSError("[WinError 126] The specified module could not be found: vssapi.dll")

    vss = FakeVss()
    provider, events, _p, _shell = _provider(vss, tmp_path)
    provider.app.create = missing
    with provider.snapshot("C:") as snap:
        assert snap.consistency == "crash" and "vssapi.dll" in snap.warnings[0]
    assert EventCode.VSS_CONSISTENCY_FALLBACK in [e.code for e in events]
