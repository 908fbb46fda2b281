"""The policy's VSS flags through the agent's edge (``agent.image_options``, ``agent.engines``) into
real disk image and files runs on Linux, with the Windows seams replaced by doubles: ``FakeVss``
(``IVssBackupComponents`` as Microsoft documents it, tests/platform/vss_double.py),
``FakePowerShell`` (WMI) and ``FakeWin32`` (the shadow copy's device)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e3backup.agent.engines import _image_backup_outcome, _volume_shadows
from e3backup.agent.image_options import image_backup_options
from e3backup.api.agent import RunAssignment
from e3backup.api.common import RunStatus
from e3backup.engines.disk_image import run_image_backup
from e3backup.engines.files.shadows import shadowed
from e3backup.events import Event, EventCode
from e3backup.platform.windows.vssapi import (
    VSS_BT_COPY,
    VSS_BT_FULL,
    VSS_E_WRITERERROR_TIMEOUT,
    VSS_WS_FAILED_AT_FREEZE,
    VSS_WS_FAILED_AT_PREPARE_BACKUP,
)
from e3backup.repo import Repository
from e3backup.sources.device import open_device
from e3backup.sources.errors import SnapshotError
from e3backup.store import LocalStore
from tests.helpers import PASSWORD
from tests.platform.vss_double import SQL_ID, FakeVss
from tests.platform.win32_double import FakeDevice, FakePowerShell, FakeWin32

SHADOW = "HarddiskVolumeShadowCopy"
DATA = random.Random(18).randbytes(2 << 20)


class ShadowDevices(FakeWin32):
    """Every shadow copy device (WMI's or the writers' set) serves the volume's bytes."""

    def open_device(self, path: str) -> int:
        if SHADOW in path and "\\" not in path.split(SHADOW, 1)[1]:
            self.devices.setdefault(path, FakeDevice(DATA))
        return super().open_device(path)


@pytest.fixture
def seams(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[FakeVss, FakePowerShell, ShadowDevices]:
    vss, shell, api = FakeVss(), FakePowerShell(), ShadowDevices()
    monkeypatch.setenv("PROGRAMDATA", str(tmp_path / "ProgramData"))  # the WMI journal
    seam: Callable[[], tuple[Any, Any, Any]] = lambda: (shell, api, vss.create)  # noqa: E731
    monkeypatch.setattr("e3backup.sources.snapshot.select.windows_seams", seam)
    return vss, shell, api


def _run(policy: dict[str, Any], engine: str = "disk_image") -> RunAssignment:
    return RunAssignment.model_validate({
        "run_id": 7, "job_id": 3, "job_name": "server C:", "engine": engine, "disk_source_volume": "C:",
        "source_paths": ["C:\\Users\\a"],
        "destination": {"type": "local", "path": "/unused", "repository_password": PASSWORD},
        "policy": policy,
    })


def _image(tmp_path: Path, api: FakeWin32, policy: dict[str, Any]) -> tuple[Any, list[Event]]:
    opts = image_backup_options(_run(policy), "winhost", "win32")
    repo_path = tmp_path / "repo"
    Repository.init(LocalStore(repo_path), PASSWORD.encode()).close()
    repo = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    events: list[Event] = []
    try:
        result = run_image_backup(repo, opts, on_event=events.append, opener=lambda p: open_device(p, api=api))
    finally:
        repo.close()
    return result, events


def _set_backup_state(vss: FakeVss) -> tuple[object, ...]:
    return next(c for o in vss.objects for c in o.calls if c[0] == "SetBackupState")


def test_default_policy_takes_the_crash_consistent_wmi_copy(
    tmp_path: Path, seams: tuple[FakeVss, FakePowerShell, ShadowDevices]
) -> None:
    vss, shell, _api = seams
    result, _events = _image(tmp_path, seams[2], {})
    assert result.consistency == "crash" and vss.objects == []
    assert any("Win32_ShadowCopy" in s for s in shell.scripts) and shell.shadows == {}
    assert _image_backup_outcome(result).status == RunStatus.SUCCESS


@pytest.mark.parametrize(("backup_type", "expected"), [("copy", VSS_BT_COPY), ("full", VSS_BT_FULL)])
def test_application_consistency_drives_the_writers(
    tmp_path: Path, seams: tuple[FakeVss, FakePowerShell, ShadowDevices], backup_type: str, expected: int
) -> None:
    vss, shell, api = seams
    result, events = _image(tmp_path, api, {"vss_consistency_level": "application", "vss_backup_type": backup_type})
    assert result.consistency == "application" and SHADOW in result.device
    assert shell.scripts == []  # no WMI copy
    assert _set_backup_state(vss) == ("SetBackupState", True, False, expected)
    assert vss.live == {} and all(o.released for o in vss.objects)
    assert result.bytes_read == len(DATA)
    assert EventCode.REPOSITORY_SNAPSHOT_SAVED in [e.code for e in events]
    assert _image_backup_outcome(result).status == RunStatus.SUCCESS


def test_a_failed_writer_makes_the_run_a_warning_or_fails_it_per_policy(
    tmp_path: Path, seams: tuple[FakeVss, FakePowerShell, ShadowDevices]
) -> None:
    vss, _shell, api = seams
    vss.states[("SqlServerWriter", "DoSnapshotSet")] = (VSS_WS_FAILED_AT_FREEZE, VSS_E_WRITERERROR_TIMEOUT)
    result, _events = _image(tmp_path / "warn", api, {"vss_consistency_level": "application"})
    outcome = _image_backup_outcome(result)
    assert outcome.status == RunStatus.WARNING
    assert outcome.error and "'SqlServerWriter' is in VSS_WS_FAILED_AT_FREEZE" in outcome.error
    assert result.snapshot_id  # the backup is stored

    with pytest.raises(SnapshotError, match="SqlServerWriter"):
        _image(tmp_path / "fail", api, {"vss_consistency_level": "application", "vss_writer_failure": "fail"})
    assert vss.live == {} and all(o.released for o in vss.objects)


def test_excluded_writers_are_disabled(tmp_path: Path, seams: tuple[FakeVss, FakePowerShell, ShadowDevices]) -> None:
    vss, _shell, api = seams
    _image(tmp_path, api, {"vss_consistency_level": "application", "vss_exclude_writers": ["SqlServerWriter"]})
    disabled = [c for o in vss.objects for c in o.calls if c[0] == "DisableWriterClasses"]
    assert disabled == [("DisableWriterClasses", (SQL_ID,))]
    added = [c[5] for o in vss.objects for c in o.calls if c[0] == "AddComponent"]
    assert added == ["Registry"]


@pytest.mark.parametrize("level", ["application", "crash"])
def test_files_runs_read_through_the_policys_shadow_copies(
    seams: tuple[FakeVss, FakePowerShell, ShadowDevices], level: str
) -> None:
    vss, shell, _api = seams
    shadows = _volume_shadows(_run({"vss_consistency_level": level}, "files").policy, "win32")
    assert shadows is not None
    events: list[Event] = []
    with shadowed(["C:\\Users\\a", "C:\\Data"], shadows, events.append) as style:
        where = style.to_fs(b"C:\\Users\\a").decode()
    assert SHADOW in where and where.endswith("\\Users\\a")
    if level == "application":
        assert shell.scripts == [] and len(vss.objects) == 1
        assert ("AddToSnapshotSet", "C:\\") in vss.objects[0].calls
        created = next(e for e in events if e.code == EventCode.VSS_SNAPSHOT_CREATED)
        assert created.details["consistency"] == "application"
    else:
        assert vss.objects == [] and any("Win32_ShadowCopy" in s for s in shell.scripts)
    assert vss.live == {} and shell.shadows == {}


def test_a_failed_writer_makes_a_files_run_a_warning(seams: tuple[FakeVss, FakePowerShell, ShadowDevices]) -> None:
    from e3backup.agent.engines import _files_backup_outcome
    from e3backup.engines.files.result import BackupResult

    vss, _shell, _api = seams
    vss.states[("Registry Writer", "PrepareForBackup")] = (VSS_WS_FAILED_AT_PREPARE_BACKUP, VSS_E_WRITERERROR_TIMEOUT)
    shadows = _volume_shadows(_run({"vss_consistency_level": "application"}, "files").policy, "win32")
    assert shadows is not None
    result = BackupResult(snapshot_id="ab" * 32)
    with shadowed(["C:\\Users\\a"], shadows, None, result.warnings):
        pass
    outcome = _files_backup_outcome(result)
    assert outcome.status == RunStatus.WARNING
    assert outcome.error and "'Registry Writer' is in VSS_WS_FAILED_AT_PREPARE_BACKUP" in outcome.error
    assert _files_backup_outcome(BackupResult(snapshot_id="ab" * 32)).status == RunStatus.SUCCESS
