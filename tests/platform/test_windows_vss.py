"""Shadow copies through WMI (``Win32_ShadowCopy``), replayed by ``FakePowerShell`` as Windows
PowerShell 5.1 prints CIM objects (tests/platform/win32_double.py). Return codes: Microsoft's
"Create method of the Win32_ShadowCopy class"; objects: "Win32_ShadowCopy class"."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.events import Event, EventCode
from e3backup.platform.windows.cim import CimError, cim_date, parse_objects
from e3backup.platform.windows.vss import CREATE_RESULTS, Journal, ShadowCopies, ShadowCopyError, volume_root
from e3backup.sources.errors import SnapshotError
from e3backup.sources.snapshot.select import select_provider
from e3backup.sources.snapshot.vss import VssSnapshotProvider
from tests.platform.win32_double import FakePowerShell, ps51_json


def _vss(tmp_path: Path) -> tuple[FakePowerShell, ShadowCopies, list[Event], VssSnapshotProvider]:
    shell = FakePowerShell()
    shadows = ShadowCopies(shell, Journal(tmp_path / "shadow-copies.json"))
    events: list[Event] = []
    return shell, shadows, events, VssSnapshotProvider(shadows, None, events.append)


def test_powershell_51_json_shapes() -> None:
    """ConvertTo-Json in 5.1: a bare object for one, an array for several, nothing for none;
    DateTime as \\/Date(ms)\\/."""
    one = parse_objects('{"ID":"{A}","InstallDate":"\\/Date(1764768000000)\\/"}\r\n')
    assert one == [{"ID": "{A}", "InstallDate": "/Date(1764768000000)/"}]
    assert len(parse_objects('[{"ID":"{A}"},{"ID":"{B}"}]')) == 2
    assert parse_objects("") == []
    assert cim_date(one[0]["InstallDate"]).isoformat() == "2025-12-03T13:20:00+00:00"  # type: ignore[union-attr]
    with pytest.raises(CimError, match="not JSON"):
        parse_objects("Invoke-CimMethod : Access denied")


def test_create_read_delete(tmp_path: Path) -> None:
    shell, shadows, events, provider = _vss(tmp_path)
    with provider.snapshot("C:") as snap:
        assert snap.provider == "vss" and snap.origin == "C:"
        assert snap.device_path == shell.device_object(snap.name or "")
        assert snap.device_path.startswith("\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy")
        assert shadows.journal.ids() == [snap.name]  # known before anything is read
        assert "Volume='C:\\'; Context='ClientAccessible'" in shell.scripts[0]
    assert shell.shadows == {} and shadows.journal.ids() == []
    assert [e.code for e in events] == [EventCode.VSS_SNAPSHOT_CREATED]


def test_deleted_when_the_run_fails(tmp_path: Path) -> None:
    shell, shadows, _events, provider = _vss(tmp_path)
    with pytest.raises(RuntimeError), provider.snapshot("C:"):
        raise RuntimeError("the repository went away")
    assert shell.shadows == {} and shadows.journal.ids() == []


@pytest.mark.parametrize("code", sorted(c for c in CREATE_RESULTS if c))
def test_every_create_return_code_is_a_clear_event(tmp_path: Path, code: int) -> None:
    shell, shadows, events, provider = _vss(tmp_path)
    shell.create_code = code
    with pytest.raises(SnapshotError) as e, provider.snapshot("D:"):
        pytest.fail("no snapshot expected")
    name, hint = CREATE_RESULTS[code]
    assert f"{name} ({code})" in str(e.value) and hint in str(e.value)
    assert [(ev.code, ev.details["return_code"]) for ev in events] == [(EventCode.VSS_SNAPSHOT_FAILED, code)]
    assert shell.shadows == {} and shadows.journal.ids() == []


def test_named_failures(tmp_path: Path) -> None:
    """The three the issue names: too many copies (8), another operation in progress (9), a
    provider veto (10)."""
    assert "Maximum number of shadow copies reached (8)" in _fail(tmp_path / "8", 8)
    assert "Another shadow copy operation is already in progress (9)" in _fail(tmp_path / "9", 9)
    assert "Shadow copy provider vetoed the operation (10)" in _fail(tmp_path / "10", 10)


def _fail(tmp_path: Path, code: int) -> str:
    shell, shadows, _events, _provider = _vss(tmp_path)
    shell.create_code = code
    with pytest.raises(ShadowCopyError) as e:
        shadows.create("C:")
    assert e.value.code == code
    return str(e.value)


def test_a_copy_that_cannot_be_deleted_is_swept_at_the_next_start(tmp_path: Path) -> None:
    shell, _shadows, events, provider = _vss(tmp_path)
    foreign = shell.add_foreign()
    shell.fail_delete = 1
    with provider.snapshot("C:") as snap:
        ours = snap.name
    assert events[-1].code is EventCode.VSS_SNAPSHOT_DELETE_FAILED
    assert set(shell.shadows) == {foreign, ours}
    # the next agent start (a new process: a new ShadowCopies on the same journal)
    swept = ShadowCopies(shell, Journal(tmp_path / "shadow-copies.json")).sweep()
    assert swept == [ours] and set(shell.shadows) == {foreign}  # other tools' copies are not ours


def test_a_killed_run_leaves_only_the_journal(tmp_path: Path) -> None:
    """ClientAccessible copies survive the process: the journal written right after Create is
    what the sweep finds."""
    shell, shadows, _events, _provider = _vss(tmp_path)
    made = shadows.create("\\\\?\\Volume{4c1b02c1-d990-11dc-99ae-806e6f6e6963}")
    gone = shadows.create("E:")
    del shell.shadows[gone.id]  # removed by hand (or a reboot) in between
    assert ShadowCopies(shell, Journal(tmp_path / "shadow-copies.json")).sweep() == [made.id]
    assert shell.shadows == {} and shadows.journal.ids() == []


def test_volume_names_and_ids_are_checked_before_any_script(tmp_path: Path) -> None:
    shell, shadows, _events, _provider = _vss(tmp_path)
    assert volume_root("c:") == "C:\\"
    with pytest.raises(ShadowCopyError, match="not a volume"):
        shadows.create("C:\\Users'; Remove-Item C:\\ -Recurse; '")
    with pytest.raises(ShadowCopyError, match="not a shadow copy ID"):
        shadows.delete("x' OR ID LIKE '%")
    assert shell.scripts == []


def test_select_provider_for_windows_sources() -> None:
    from e3backup.sources.snapshot.none import NoSnapshotProvider

    assert isinstance(select_provider("\\\\.\\PhysicalDrive0"), NoSnapshotProvider)  # disks: read directly
    with pytest.raises(ValueError, match="LVM snapshots are for Linux"):
        select_provider("C:", mode="lvm")
    with pytest.raises(ValueError, match="not a Windows volume"):
        select_provider("/dev/sda", mode="vss")


def test_ps51_double_prints_like_powershell() -> None:
    assert ps51_json([]) == ""
    assert ps51_json([{"A": "/Date(1)/"}]) == '{"A":"\\/Date(1)\\/"}\r\n'


def test_agent_start_sweeps_the_journal_on_windows(tmp_path: Path) -> None:
    """The agent's start-up cleanup (``default_snapshot_cleanup``) sweeps VSS leftovers."""
    from e3backup.agent.runner import default_snapshot_cleanup

    shell, shadows, _events, _provider = _vss(tmp_path)
    left = shadows.create("C:").id  # then the run was killed
    assert default_snapshot_cleanup("win32", shadows) == [left]
    assert shell.shadows == {}
