"""`WmiHost` against a PowerShell double that replays objects shaped as Microsoft documents them
(Hyper-V cannot run here). The shapes, from learn.microsoft.com:

- Msvm_VirtualSystemSnapshotService.CreateSnapshot ("msvm-virtualsystemsnapshotservice-createsnapshot"):
  returns 0 (completed) or 4096 (job started) with ``Job``; the checkpoint is the job's related
  Msvm_VirtualSystemSettingData.
- CIM_ConcreteJob ("cim-concretejob"): JobState 2 New, 3 Starting, 4 Running, 7 Completed,
  10 Exception, with ErrorCode and ErrorDescription.
- Msvm_ImageManagementService.GetVirtualDiskChanges ("msvm-imagemanagementservice-getvirtualdiskchanges"):
  ProcessedByteLength, ChangedByteOffsets[], ChangedByteLengths[]; asked again from where it stopped.
- Msvm_VirtualSystemSnapshotService.ConvertToReferencePoint
  ("msvm-virtualsystemsnapshotservice-converttoreferencepoint") and Msvm_VirtualSystemReferencePoint
  ("msvm-virtualsystemreferencepoint"): VirtualDiskIdentifiers[] parallel to
  ResilientChangeTrackingIdentifiers[].
- The virtdisk HRESULTs for a broken chain (golang.org/x/sys/windows zerrors_windows.go):
  0xC03A0029 ERROR_VHD_INVALID_CHANGE_TRACKING_ID, 0xC03A002A ..._DISABLED, 0xC03A0030 ..._MISSING_...
Windows PowerShell 5.1's ConvertTo-Json turns a one-element array into the element: replayed too.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from e3backup.sources.hyperv.host import (
    ERROR_VHD_CHANGE_TRACKING_DISABLED,
    ERROR_VHD_INVALID_CHANGE_TRACKING_ID,
    Checkpoint,
    ConsistencyUnavailable,
    FrozenDisk,
    HyperVError,
    RctError,
)
from e3backup.sources.hyperv.wmi import SCRIPTS, SNAPSHOT_TYPE_RECOVERY, WmiHost

VM = "2A1C7B4E-9F3D-4E8A-B1C2-0D9E8F7A6B5C"
DISK0, DISK1 = "6C0F2D1E-1111-4A2B-9C3D-4E5F60718293", "7D1A3E2F-2222-4B3C-8D4E-5F6071829304"
JOB = r"\\HV01\root\virtualization\v2:Msvm_ConcreteJob.InstanceID=""8E6B5E1B-5B5C-4E0E-9C7E-3F3C1B6A2D10"""


class Replay:
    """A PowerShell double: answers per operation, in order; records what was asked."""

    def __init__(self, answers: dict[str, list[Any]]) -> None:
        self.answers = {op: deque(a) for op, a in answers.items()}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, op: str, args: dict[str, Any]) -> Any:
        assert op in SCRIPTS, op
        self.calls.append((op, args))
        return self.answers[op].popleft()

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]


def host(answers: dict[str, list[Any]]) -> tuple[WmiHost, Replay]:
    ps = Replay(answers)
    return WmiHost(ps, sleep=lambda _s: None), ps


def running(percent: int) -> dict[str, Any]:
    return {"JobState": 4, "ErrorCode": 0, "ErrorDescription": "", "PercentComplete": percent}


COMPLETED = {"JobState": 7, "ErrorCode": 0, "ErrorDescription": ""}
SNAPSHOT = {"InstanceID": f"Microsoft:{VM}\\C2B5F2D6-0A8E-4C4A-9E1B-7F5D3A2C1B0E", "ElementName": "web01 - (12/3/2026)"}


def test_list_vms_projects_discovery_and_accepts_lone_objects() -> None:
    h, _ = host({"list_vms": [{  # one VM: ConvertTo-Json drops the array
        "Name": "web01", "Id": VM.lower(), "State": "Running", "Generation": 2, "Version": "9.0",
        "OSName": '<INSTANCE CLASSNAME="Msvm_KvpExchangeDataItem"><PROPERTY NAME="Data" TYPE="string"><VALUE>'
                  "Windows Server 2022 Datacenter</VALUE></PROPERTY></INSTANCE>",
        "Integration": [{"Name": "Heartbeat", "Enabled": True}, {"Name": "Backup", "Enabled": False}],
        "Disks": {"Path": r"D:\VMs\web01\os.vhdx", "DiskIdentifier": DISK0.lower(), "Size": 68719476736,
                  "FileSize": 9663676416, "Controller": "SCSI 0:0"},
    }]})
    (vm,) = h.list_vms()
    assert (vm.id, vm.name, vm.generation, vm.guest_os, vm.rct_supported) == (VM, "web01", 2, "windows", True)
    assert vm.integration_services == {"Heartbeat": True, "Backup": False}
    assert [(d.identifier, d.path, d.size) for d in vm.disks] == [(DISK0, r"D:\VMs\web01\os.vhdx", 68719476736)]
    old, _ = host({"list_vms": [[{"Name": "nt", "Id": VM, "Version": "5.0", "Disks": [], "Integration": []}]]})
    assert old.list_vms()[0].rct_supported is False  # configuration version 5.0 has no RCT


def test_create_checkpoint_waits_on_the_job_then_names_it() -> None:
    h, ps = host({
        "create_snapshot": [{"ReturnValue": 4096, "Job": JOB}],
        "job": [{"JobState": 3, "ErrorCode": 0}, running(40), COMPLETED, COMPLETED],
        "job_result": [SNAPSHOT],
        "rename_snapshot": [{"ReturnValue": 4096, "Job": JOB}],
    })
    c = h.create_checkpoint(VM, "application", "e3backup-run1")
    assert (c.id, c.name, c.consistency) == (SNAPSHOT["InstanceID"], "e3backup-run1", "application")
    op, args = ps.calls[0]
    assert (op, args["SnapshotType"], args["ConsistencyLevel"]) == ("create_snapshot", SNAPSHOT_TYPE_RECOVERY, 1)
    assert ps.ops() == ["create_snapshot", "job", "job", "job", "job_result", "rename_snapshot", "job"]


def test_a_failed_application_consistent_job_asks_for_crash_consistency() -> None:
    h, _ = host({
        "create_snapshot": [{"ReturnValue": 4096, "Job": JOB}],
        "job": [running(10), {"JobState": 10, "ErrorCode": 32768,
                              "ErrorDescription": "Could not create backup checkpoint for virtual machine 'web01': "
                                                  "The VSS writer did not respond. (0x80070490)"}],
    })
    with pytest.raises(ConsistencyUnavailable, match="VSS writer did not respond"):
        h.create_checkpoint(VM, "application", "e3backup-x")
    h2, _ = host({"create_snapshot": [{"ReturnValue": 32775, "Job": ""}]})  # Invalid state for this operation
    with pytest.raises(HyperVError, match="32775") as e:
        h2.create_checkpoint(VM, "crash", "e3backup-x")
    assert not isinstance(e.value, ConsistencyUnavailable)


def test_changed_ranges_page_through_the_disk() -> None:
    size = 64 << 30
    disk = FrozenDisk(DISK0, r"D:\VMs\web01\os.vhdx", r"D:\VMs\web01\os.vhdx", size)
    h, ps = host({
        "disk_changes": [
            {"ReturnValue": 0, "Job": "", "ProcessedByteLength": 32 << 30,
             "ChangedByteOffsets": [1048576, 2147483648], "ChangedByteLengths": [65536, 1048576]},
            {"ReturnValue": 0, "Job": "", "ProcessedByteLength": 32 << 30,
             "ChangedByteOffsets": 40 << 30, "ChangedByteLengths": 4096},  # one range: no array
        ],
    })
    ck = Checkpoint(SNAPSHOT["InstanceID"], VM, "e3backup-x", "application")
    got = h.changed_ranges(ck, disk, "rctX:9d8c7b6a-aaaa-bbbb-cccc-ddddeeeeffff:12")
    assert got == [(1048576, 65536), (2147483648, 1048576), (40 << 30, 4096)]
    assert [a["ByteOffset"] for _, a in ps.calls] == [0, 32 << 30]
    assert ps.calls[0][1]["LimitId"] == "rctX:9d8c7b6a-aaaa-bbbb-cccc-ddddeeeeffff:12"


@pytest.mark.parametrize("code", [ERROR_VHD_INVALID_CHANGE_TRACKING_ID, ERROR_VHD_CHANGE_TRACKING_DISABLED])
def test_the_documented_rct_errors_are_a_broken_chain(code: int) -> None:
    disk = FrozenDisk(DISK0, r"D:\os.vhdx", r"D:\os.vhdx", 1 << 30)
    ck = Checkpoint(SNAPSHOT["InstanceID"], VM, "x", "crash")
    direct, _ = host({"disk_changes": [{"ReturnValue": code - (1 << 32), "Job": ""}]})  # a signed HRESULT
    with pytest.raises(RctError) as e:
        direct.changed_ranges(ck, disk, "rctX:old")
    assert e.value.code == code and e.value.reason.endswith(")")
    by_job, _ = host({"disk_changes": [{"ReturnValue": 4096, "Job": JOB}],
                      "job": [{"JobState": 10, "ErrorCode": code, "ErrorDescription": ""}]})
    with pytest.raises(RctError) as e2:
        by_job.changed_ranges(ck, disk, "rctX:old")
    assert e2.value.code == code


def test_reference_point_ids_are_keyed_by_disk_identifier_not_position() -> None:
    point = {"InstanceID": "Microsoft:9E0D7C1A-3B2C-4D5E-8F90-A1B2C3D4E5F6", "ElementName": "",
             "VirtualDiskIdentifiers": [DISK1.lower(), DISK0.lower()],
             "ResilientChangeTrackingIdentifiers": ["rctX:b:7", "rctX:a:12"]}
    h, _ = host({
        "convert_to_reference_point": [{"ReturnValue": 4096, "Job": JOB}],
        "job": [running(50), COMPLETED],
        "job_result": [[point]],
        "reference_points": [point],
    })
    rp = h.convert_to_reference_point(Checkpoint(SNAPSHOT["InstanceID"], VM, "x", "crash"))
    assert rp.rct_ids == {DISK1: "rctX:b:7", DISK0: "rctX:a:12"}
    assert h.reference_points(VM)[0].rct_ids == rp.rct_ids
    broken, _ = host({"reference_points": [{**point, "ResilientChangeTrackingIdentifiers": ["rctX:b:7"]}]})
    with pytest.raises(HyperVError, match="2 disks but 1 RCT IDs"):
        broken.reference_points(VM)


def test_a_job_that_never_ends_times_out_naming_it() -> None:
    ticks = iter(range(0, 10_000, 100))
    ps = Replay({"destroy_snapshot": [{"ReturnValue": 4096, "Job": JOB}], "job": [running(1)] * 100})
    h = WmiHost(ps, sleep=lambda _s: None, clock=lambda: float(next(ticks)), job_timeout=250)
    with pytest.raises(HyperVError, match="did not finish within 250s"):
        h.remove_checkpoint(Checkpoint(SNAPSHOT["InstanceID"], VM, "x", "crash"))


def test_the_runner_sends_arguments_on_stdin_never_in_the_script(monkeypatch: pytest.MonkeyPatch) -> None:
    """A VM name with quotes cannot inject PowerShell: the script is fixed text (encoded), the
    arguments go as JSON on stdin."""
    import base64
    import subprocess

    from e3backup.sources.hyperv.wmi import WindowsPowerShell

    seen: dict[str, Any] = {}

    def fake_run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        seen["argv"], seen["input"] = argv, kw["input"]
        return subprocess.CompletedProcess(argv, 0, '{"ReturnValue": 0, "Job": ""}', "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    name = "web'; Remove-VM -Name * -Force; '"
    assert WindowsPowerShell()("rename_snapshot", {"InstanceID": "Microsoft:X", "Name": name}) == {
        "ReturnValue": 0, "Job": ""}
    script = base64.b64decode(seen["argv"][seen["argv"].index("-EncodedCommand") + 1]).decode("utf-16-le")
    assert "Remove-VM" not in script and "ModifySystemSettings" in script
    assert name in seen["input"]

    def failing(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "Get-VM : Hyper-V was unable to find a virtual machine\n")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(HyperVError, match=r"list_vms.*unable to find a virtual machine"):
        WindowsPowerShell()("list_vms", {})


def _listed(vm_id: str, name: str) -> dict[str, Any]:
    return {"Name": name, "Id": vm_id.lower(), "State": "Off", "Generation": 2, "Version": "9.0", "OSName": "",
            "Integration": [], "Disks": []}


def test_import_vm_registers_the_restored_folder_new_or_in_place(tmp_path: Any) -> None:
    """Compare-VM / Import-VM (learn.microsoft.com "Import-VM", "Compare-VM": a .vmcx under
    "Virtual Machines", -Copy -GenerateNewId for a new VM, -Register for the original's ID).
    The host sends the folder and the original's ID (the .vmcx file's name) as arguments, and
    finds the imported VM in the host's list; one that is not listed is an error naming it."""
    folder = tmp_path / "web01-restore"
    (folder / "Virtual Machines").mkdir(parents=True)
    (folder / "Virtual Machines" / f"{VM}.vmcx").write_bytes(b"\0" * 64)
    new = "5B3E8C21-7A44-4D1F-A2B3-C4D5E6F70819"
    h, ps = host({"import_vm": [{"Id": new.lower(), "Name": "web01-restored"}, {"Id": VM.lower(), "Name": "web01"},
                                {"Id": new.lower(), "Name": "ghost"}],
                  "list_vms": [[_listed(VM, "web01"), _listed(new, "web01-restored")], _listed(VM, "web01"),
                               _listed(VM, "web01")]})
    copy = h.import_vm(str(folder), "web01-restored", new_id=True, replace=False)
    assert (copy.id, copy.name) == (new, "web01-restored")
    assert ps.calls[0] == ("import_vm", {"Folder": str(folder), "Name": "web01-restored", "NewId": True,
                                         "Replace": False, "OriginalId": VM})
    back = h.import_vm(str(folder), "web01", new_id=False, replace=True)
    assert back.id == VM and ps.calls[2][1]["Replace"] is True and ps.calls[2][1]["NewId"] is False
    with pytest.raises(HyperVError, match=r"imported VM ghost .* is not listed by the host"):
        h.import_vm(str(folder), "ghost", new_id=True, replace=False)
    # the script removes the original only when asked to replace it, and registers from the .vmcx
    script = SCRIPTS["import_vm"]
    assert "if ($a.Replace)" in script and "Remove-VM" in script and "-GenerateNewId:$a.NewId" in script
