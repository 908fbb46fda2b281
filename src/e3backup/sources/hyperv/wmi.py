"""`WmiHost`: a real Hyper-V host through Windows PowerShell and WMI (``root\\virtualization\\v2``).

Why PowerShell, not pywin32: every Hyper-V host has Windows PowerShell 5.1 with the WMI
accelerators (``[wmi]``, ``[wmiclass]``, ``GetText(1)`` for embedded instances, as Microsoft's
own xHyper-VBackup sample uses them); pywin32 would add a native dependency and COM apartment
rules to every worker thread, and nothing in it can be replayed on Linux. Here each operation is
one small script whose arguments arrive as JSON on stdin (never spliced into the script text)
and whose answer is JSON on stdout, so the tests replay the documented objects and job states.

Every method returning a ``CIM_ConcreteJob`` (``ReturnValue`` 4096, "job started") is waited on
from Python, polling ``JobState`` (2 New, 3 Starting, 4 Running, 7 Completed, 8 Terminated,
9 Killed, 10 Exception); ``ReturnValue`` 0 means done at once, anything else is an error whose
code is kept (the RCT chain-break HRESULTs 0xC03A0029/2A/30 become `RctError`).

Nothing of this has run on a real Hyper-V host yet (``docs/hyperv.md``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from .host import (
    CONSISTENCY_APPLICATION,
    RCT_ERRORS,
    Checkpoint,
    CheckpointFiles,
    ConsistencyUnavailable,
    FrozenDisk,
    HyperVError,
    RctError,
    ReferencePoint,
    VirtualDisk,
    VmInfo,
)

NS = r"root\virtualization\v2"
SNAPSHOT_TYPE_RECOVERY = 32768  # CreateSnapshot's SnapshotType for a recovery checkpoint
CONSISTENCY_LEVELS = {CONSISTENCY_APPLICATION: 1, "crash": 2}  # Msvm_VirtualSystemSnapshotSettingData
RETURN_OK, RETURN_JOB_STARTED = 0, 4096
JOB_RUNNING = {2, 3, 4, 5, 6}  # New, Starting, Running, Suspended, Shutting Down
JOB_COMPLETED = 7
JOB_POLL_SECONDS = 1.0
JOB_TIMEOUT_SECONDS = 3600.0

# -- the scripts (arguments in $a, from stdin; output: one JSON document) --------------------------

_PRELUDE = r"""$ErrorActionPreference = 'Stop'
$a = [Console]::In.ReadToEnd() | ConvertFrom-Json
$ns = 'root\virtualization\v2'
function Svc($class) { Get-WmiObject -Namespace $ns -Class $class }
function Vm($id) { Get-WmiObject -Namespace $ns -Class Msvm_ComputerSystem -Filter "Name='$id'" }
function Snap($id) { [wmi]("\\.\$ns" + ":Msvm_VirtualSystemSettingData.InstanceID='" + $id.Replace('\', '\\') + "'") }
function Out($x) { ConvertTo-Json -InputObject $x -Depth 6 -Compress }
function Call($r) { Out @{ ReturnValue = [int]$r.ReturnValue; Job = [string]$r.Job } }
"""

SCRIPTS: dict[str, str] = {
    # Get-VM and friends: the Hyper-V module projects what discovery needs in one pass
    "list_vms": r"""
$out = @(foreach ($vm in Get-VM) {
  $os = ''
  $kvp = Get-WmiObject -Namespace $ns -Class Msvm_KvpExchangeComponent -Filter "SystemName='$($vm.Id)'"
  if ($kvp) { $os = ($kvp.GuestIntrinsicExchangeItems | Where-Object { $_ -match 'OSName' }) -join '' }
  @{ Name = $vm.Name; Id = "$($vm.Id)"; State = "$($vm.State)"; Generation = $vm.Generation;
     Version = "$($vm.Version)"; OSName = $os;
     Integration = @($vm | Get-VMIntegrationService | ForEach-Object { @{ Name = $_.Name; Enabled = $_.Enabled } });
     Disks = @($vm | Get-VMHardDiskDrive | ForEach-Object {
        $vhd = Get-VHD -Path $_.Path
        @{ Path = $_.Path; DiskIdentifier = "$($vhd.DiskIdentifier)"; Size = $vhd.Size; FileSize = $vhd.FileSize;
           Controller = "$($_.ControllerType) $($_.ControllerNumber):$($_.ControllerLocation)" } }) }
})
Out $out
""",
    "create_snapshot": r"""
$ssd = ([wmiclass]("\\.\$ns" + ':Msvm_VirtualSystemSnapshotSettingData')).CreateInstance()
$ssd.ConsistencyLevel = [byte]$a.ConsistencyLevel
$ssd.IgnoreNonSnapshottableDisks = $true
$ssd.GuestBackupType = [byte]1
Call ((Svc Msvm_VirtualSystemSnapshotService).CreateSnapshot((Vm $a.VmId), $ssd.GetText(1), [uint16]$a.SnapshotType))
""",
    "job": r"""
$j = [wmi]$a.Job
Out @{ JobState = [int]$j.JobState; ErrorCode = [int]$j.ErrorCode; ErrorDescription = "$($j.ErrorDescription)" }
""",
    "job_result": r"""
Out @(([wmi]$a.Job).GetRelated($a.Class) | ForEach-Object {
  @{ InstanceID = $_.InstanceID; ElementName = $_.ElementName; VirtualDiskIdentifiers = @($_.VirtualDiskIdentifiers);
     ResilientChangeTrackingIdentifiers = @($_.ResilientChangeTrackingIdentifiers) } })
""",
    "rename_snapshot": r"""
$s = Snap $a.InstanceID
$s.ElementName = $a.Name
Call ((Svc Msvm_VirtualSystemManagementService).ModifySystemSettings($s.GetText(1)))
""",
    "recovery_snapshots": r"""
Out @((Vm $a.VmId).GetRelated('Msvm_VirtualSystemSettingData') |
  Where-Object { $_.VirtualSystemType -eq 'Microsoft:Hyper-V:Snapshot:Recovery' } |
  ForEach-Object { @{ InstanceID = $_.InstanceID; ElementName = $_.ElementName } })
""",
    "snapshot_files": r"""
$s = Snap $a.InstanceID
$disks = @($s.GetRelated('Msvm_StorageAllocationSettingData') |
  Where-Object { $_.ResourceSubType -eq 'Microsoft:Hyper-V:Virtual Hard Disk' } |
  ForEach-Object { $p = $_.HostResource[0]; $vhd = Get-VHD -Path $p
    @{ Path = $p; DiskIdentifier = "$($vhd.DiskIdentifier)"; Size = $vhd.Size; ParentPath = "$($vhd.ParentPath)" } })
$guid = $s.InstanceID.Split(':')[-1]
$config = @(Get-ChildItem -Path (Join-Path $s.ConfigurationDataRoot 'Snapshots') -Filter "$guid.*" |
  ForEach-Object { $_.FullName })
Out @{ Disks = $disks; Config = $config }
""",
    "disk_changes": r"""
$r = (Svc Msvm_ImageManagementService).GetVirtualDiskChanges($a.Path, $a.LimitId, (Snap $a.TargetSnapshot),
  [uint64]$a.ByteOffset, [uint64]$a.ByteLength)
Out @{ ReturnValue = [int64]$r.ReturnValue; Job = [string]$r.Job; ProcessedByteLength = [uint64]$r.ProcessedByteLength;
  ChangedByteOffsets = @($r.ChangedByteOffsets); ChangedByteLengths = @($r.ChangedByteLengths) }
""",
    "reference_points": r"""
Out @((Vm $a.VmId).GetRelated('Msvm_VirtualSystemReferencePoint') | ForEach-Object {
  @{ InstanceID = $_.InstanceID; VirtualDiskIdentifiers = @($_.VirtualDiskIdentifiers);
     ResilientChangeTrackingIdentifiers = @($_.ResilientChangeTrackingIdentifiers) } })
""",
    "convert_to_reference_point": r"""
Call ((Svc Msvm_VirtualSystemSnapshotService).ConvertToReferencePoint((Snap $a.InstanceID)))
""",
    "destroy_snapshot": r"""
Call ((Svc Msvm_VirtualSystemSnapshotService).DestroySnapshot((Snap $a.InstanceID)))
""",
    "destroy_reference_point": r"""
$p = Get-WmiObject -Namespace $ns -Class Msvm_VirtualSystemReferencePoint -Filter "InstanceID='$($a.InstanceID)'"
Call ((Svc Msvm_VirtualSystemReferencePointService).DestroyReferencePoint($p))
""",
    # Compare-VM's report points the restored disks at their new files; Import-VM registers it
    "import_vm": r"""
if ($a.Replace) { Get-VM -Id $a.OriginalId -ErrorAction SilentlyContinue | Remove-VM -Force }
$config = Get-ChildItem -Path (Join-Path $a.Folder 'Virtual Machines') -Filter *.vmcx | Select-Object -First 1
$report = Compare-VM -Path $config.FullName -Register:(-not $a.NewId) -Copy:$a.NewId -GenerateNewId:$a.NewId
foreach ($i in $report.Incompatibilities) {
  if ($i.Source -is [Microsoft.HyperV.PowerShell.HardDiskDrive]) {
    $name = [IO.Path]::GetFileNameWithoutExtension($i.Source.Path) + '.vhdx'
    Set-VMHardDiskDrive -VMHardDiskDrive $i.Source -Path (Join-Path (Join-Path $a.Folder 'Virtual Hard Disks') $name)
  }
}
$vm = Import-VM -CompatibilityReport $report
Rename-VM -VM $vm -NewName $a.Name
Out @{ Id = "$($vm.Id)"; Name = $a.Name }
""",
}


class PowerShell(Protocol):
    """Runs one of `SCRIPTS` with JSON arguments and returns the decoded JSON answer."""

    def __call__(self, op: str, args: dict[str, Any]) -> Any: ...


class WindowsPowerShell:
    """The real runner: ``powershell.exe -NoProfile -NonInteractive -Command -``."""

    def __init__(self, exe: str = "powershell.exe", timeout: float = 600.0) -> None:
        self.exe, self.timeout = exe, timeout

    def __call__(self, op: str, args: dict[str, Any]) -> Any:
        script = _PRELUDE + SCRIPTS[op]
        # the script itself on stdin would be read by -Command -; so it goes as an encoded command
        # and the arguments as stdin
        import base64

        encoded = base64.b64encode(script.encode("utf-16-le")).decode()
        try:
            p = subprocess.run([self.exe, "-NoProfile", "-NonInteractive", "-EncodedCommand", encoded],
                               input=json.dumps(args), capture_output=True, text=True, timeout=self.timeout,
                               check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise HyperVError(f"PowerShell ({op}): {e}") from e
        if p.returncode != 0:
            raise HyperVError(f"PowerShell ({op}) failed: {_first_line(p.stderr) or p.returncode}")
        try:
            return json.loads(p.stdout) if p.stdout.strip() else None
        except ValueError as e:
            raise HyperVError(f"PowerShell ({op}) answered no JSON: {_first_line(p.stdout)}") from e


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _list(x: Any) -> list[Any]:
    """Windows PowerShell 5.1's ConvertTo-Json gives a lone object where one element was."""
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


class WmiHost:
    """`HyperVHost` on this machine's Hyper-V (see the module docstring)."""

    def __init__(self, powershell: PowerShell | None = None, sleep: Callable[[float], object] | None = None,
                 clock: Callable[[], float] = time.monotonic, job_timeout: float = JOB_TIMEOUT_SECONDS) -> None:
        self.name = "local"
        self.ps = powershell or WindowsPowerShell()
        self.sleep = sleep or threading.Event().wait
        self.clock = clock
        self.job_timeout = job_timeout

    # -- jobs --------------------------------------------------------------------------------------

    def _wait(self, what: str, answer: dict[str, Any]) -> str:
        """Wait for a method's job; returns the job path ('' when it completed at once)."""
        rv = int(answer.get("ReturnValue", -1))
        if rv == RETURN_OK:
            return str(answer.get("Job") or "")
        if rv != RETURN_JOB_STARTED:
            raise _error(what, rv, "")
        job = str(answer["Job"])
        deadline = self.clock() + self.job_timeout
        while True:
            state = self.ps("job", {"Job": job})
            js = int(state["JobState"])
            if js == JOB_COMPLETED:
                return job
            if js not in JOB_RUNNING:
                raise _error(what, int(state.get("ErrorCode") or 0), str(state.get("ErrorDescription") or ""),
                             job_state=js)
            if self.clock() > deadline:
                raise HyperVError(f"{what}: the WMI job did not finish within {self.job_timeout:g}s ({job})")
            self.sleep(JOB_POLL_SECONDS)

    # -- HyperVHost --------------------------------------------------------------------------------

    def list_vms(self) -> list[VmInfo]:
        out = []
        for vm in _list(self.ps("list_vms", {})):
            disks = tuple(
                VirtualDisk(str(d["DiskIdentifier"]).upper(), str(d["Path"]), int(d.get("Size") or 0),
                            int(d.get("FileSize") or 0), str(d.get("Controller") or ""))
                for d in _list(vm.get("Disks"))
            )
            version = str(vm.get("Version") or "")
            out.append(VmInfo(
                id=str(vm["Id"]).upper(), name=str(vm["Name"]), state=str(vm.get("State") or ""),
                generation=int(vm.get("Generation") or 0), version=version, disks=disks,
                integration_services={str(s["Name"]): bool(s["Enabled"]) for s in _list(vm.get("Integration"))},
                guest_os=_guest_os(str(vm.get("OSName") or "")),
                change_tracking=_version_at_least(version, (6, 2)),  # Hyper-V tracks such disks itself
            ))
        return out

    def enable_change_tracking(self, vm_id: str) -> None:
        """Hyper-V keeps RCT on for every disk of a VM at configuration version 6.2 or later; there
        is no WMI switch for it. A disk without tracking fails its changes query (DISABLED) and is
        backed up in full, which is the engine's answer to a broken chain anyway."""

    def create_checkpoint(self, vm_id: str, consistency: str, name: str) -> Checkpoint:
        what = f"VM {vm_id}: CreateSnapshot"
        answer = self.ps("create_snapshot", {"VmId": vm_id, "ConsistencyLevel": CONSISTENCY_LEVELS[consistency],
                                             "SnapshotType": SNAPSHOT_TYPE_RECOVERY})
        try:
            job = self._wait(what, answer)
        except HyperVError as e:
            if consistency == CONSISTENCY_APPLICATION:
                raise ConsistencyUnavailable(f"application-consistent checkpoint refused: {e}") from e
            raise
        made = _list(self.ps("job_result", {"Job": job, "Class": "Msvm_VirtualSystemSettingData"}))
        if not made:
            raise HyperVError(f"{what}: the job completed without a checkpoint")
        instance = str(made[0]["InstanceID"])
        self._wait(f"VM {vm_id}: naming checkpoint {instance}",
                   self.ps("rename_snapshot", {"InstanceID": instance, "Name": name}))
        return Checkpoint(instance, vm_id, name, consistency)

    def recovery_checkpoints(self, vm_id: str) -> list[Checkpoint]:
        return [Checkpoint(str(s["InstanceID"]), vm_id, str(s.get("ElementName") or ""), "")
                for s in _list(self.ps("recovery_snapshots", {"VmId": vm_id}))]

    def checkpoint_files(self, checkpoint: Checkpoint) -> CheckpointFiles:
        doc = self.ps("snapshot_files", {"InstanceID": checkpoint.id})
        live = {d.identifier: d.path for vm in self.list_vms() if vm.id == checkpoint.vm_id for d in vm.disks}
        disks = tuple(
            FrozenDisk(str(d["DiskIdentifier"]).upper(), str(d["Path"]),
                       live.get(str(d["DiskIdentifier"]).upper(), str(d["Path"])), int(d.get("Size") or 0))
            for d in _list(doc.get("Disks"))
        )
        return CheckpointFiles(disks, tuple(str(p) for p in _list(doc.get("Config"))))

    def changed_ranges(self, checkpoint: Checkpoint, disk: FrozenDisk, rct_id: str) -> list[tuple[int, int]]:
        """GetVirtualDiskChanges from 0 to the disk's size, page by page (the host answers a
        ``ProcessedByteLength`` at a time)."""
        ranges: list[tuple[int, int]] = []
        offset = 0
        while offset < disk.size:
            answer = self.ps("disk_changes", {"Path": disk.path, "LimitId": rct_id, "TargetSnapshot": checkpoint.id,
                                              "ByteOffset": offset, "ByteLength": disk.size - offset})
            try:
                self._wait(f"{disk.path}: GetVirtualDiskChanges", answer)
            except RctError:
                raise
            except HyperVError as e:
                raise RctError(str(e), getattr(e, "code", 0)) from e
            offsets, lengths = _list(answer.get("ChangedByteOffsets")), _list(answer.get("ChangedByteLengths"))
            if len(offsets) != len(lengths):
                raise HyperVError(f"{disk.path}: GetVirtualDiskChanges gave {len(offsets)} offsets and "
                                  f"{len(lengths)} lengths")
            ranges += [(int(o), int(n)) for o, n in zip(offsets, lengths, strict=True) if int(n)]
            processed = int(answer.get("ProcessedByteLength") or 0)
            if processed <= 0:
                raise HyperVError(f"{disk.path}: GetVirtualDiskChanges processed nothing at offset {offset}")
            offset += processed
        return ranges

    def reference_points(self, vm_id: str) -> list[ReferencePoint]:
        return [_reference_point(p, vm_id) for p in _list(self.ps("reference_points", {"VmId": vm_id}))]

    def convert_to_reference_point(self, checkpoint: Checkpoint) -> ReferencePoint:
        what = f"checkpoint {checkpoint.id}: ConvertToReferencePoint"
        job = self._wait(what, self.ps("convert_to_reference_point", {"InstanceID": checkpoint.id}))
        made = _list(self.ps("job_result", {"Job": job, "Class": "Msvm_VirtualSystemReferencePoint"}))
        if not made:
            raise HyperVError(f"{what}: the job completed without a reference point")
        return _reference_point(made[0], checkpoint.vm_id)

    def remove_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._wait(f"checkpoint {checkpoint.id}: DestroySnapshot",
                   self.ps("destroy_snapshot", {"InstanceID": checkpoint.id}))

    def remove_reference_point(self, point: ReferencePoint) -> None:
        self._wait(f"reference point {point.id}: DestroyReferencePoint",
                   self.ps("destroy_reference_point", {"InstanceID": point.id}))

    def import_vm(self, folder: str, name: str, new_id: bool, replace: bool) -> VmInfo:
        original = ""
        config_dir = os.path.join(folder, "Virtual Machines")
        for f in sorted(os.listdir(config_dir)) if os.path.isdir(config_dir) else []:
            if f.lower().endswith(".vmcx"):
                original = os.path.splitext(f)[0]
        doc = self.ps("import_vm", {"Folder": os.path.abspath(folder), "Name": name, "NewId": new_id,
                                    "Replace": replace, "OriginalId": original})
        vm_id = str(doc["Id"]).upper()
        for vm in self.list_vms():
            if vm.id == vm_id:
                return vm
        raise HyperVError(f"imported VM {name} ({vm_id}) is not listed by the host")


class _CodedError(HyperVError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _error(what: str, code: int, description: str, job_state: int | None = None) -> HyperVError:
    unsigned = code & 0xFFFFFFFF
    where = f" (job state {job_state})" if job_state is not None else ""
    if unsigned in RCT_ERRORS:
        return RctError(f"{what}: {description or RCT_ERRORS[unsigned]}{where}", unsigned)
    return _CodedError(f"{what} failed with {code}{where}: {description or 'no description'}", unsigned)


def _reference_point(p: dict[str, Any], vm_id: str) -> ReferencePoint:
    disks, ids = _list(p.get("VirtualDiskIdentifiers")), _list(p.get("ResilientChangeTrackingIdentifiers"))
    if len(disks) != len(ids):
        raise HyperVError(f"reference point {p.get('InstanceID')}: {len(disks)} disks but {len(ids)} RCT IDs")
    # the two arrays are parallel ([W3]); keyed by disk identifier, never by position
    rct = {str(d).upper(): str(i) for d, i in zip(disks, ids, strict=True)}
    return ReferencePoint(str(p["InstanceID"]), vm_id, rct)


def _guest_os(os_name: str) -> str:
    if re.search(r"windows", os_name, re.IGNORECASE):
        return "windows"
    if re.search(r"linux|ubuntu|debian|red hat|centos|suse|fedora", os_name, re.IGNORECASE):
        return "linux"
    return "unknown"


def _version_at_least(version: str, least: tuple[int, int]) -> bool:
    try:
        major, minor = (int(x) for x in [*version.split("."), "0"][:2])
    except ValueError:
        return False
    return (major, minor) >= least


__all__ = ["SCRIPTS", "PowerShell", "WindowsPowerShell", "WmiHost"]
