"""`SimHost`: a simulated Hyper-V host in a folder of real VHDX files (``--host sim:DIR``).

    DIR/<vm name>/vm.json          the VM: ID, state, generation, version, guest, disks, RCT
                                   state, checkpoints, reference points
    DIR/<vm name>/<disk>.vhdx      dynamic VHDX (made by qemu-img), or an AVHDX chain
    DIR/<vm name>/checkpoints/<id>/vm.json   a checkpoint's configuration file

It behaves as Hyper-V does where the engine can tell:
- a checkpoint freezes each disk's current file and gives the VM a new differencing AVHDX child
  beside it (``<disk>_<id>.avhdx``) for the writes that follow; removing the checkpoint merges the
  child back into the frozen file and deletes it;
- every guest write (`guest_write`) is recorded as an RCT range with a sequence number; an RCT ID
  is ``rctX:<tracking guid>:<sequence>``, so `changed_ranges` answers exactly what was written
  between two IDs, and fails with the virtdisk error codes where Hyper-V does: another tracking
  GUID (tracking was reset) is ``ERROR_VHD_INVALID_CHANGE_TRACKING_ID``, tracking off is
  ``..._DISABLED``, an ID older than the kept log is ``..._MISSING_CHANGE_TRACKING_INFORMATION``;
- converting a checkpoint to a reference point records the disks' RCT IDs and removes it;
- an application-consistent checkpoint needs a guest that can freeze (``can_freeze``: VSS in a
  Windows guest, ``hv_vss_daemon`` in a Linux one) and the Backup integration service.

Guest writes go through our `VhdxUpdater`; the VHDX files stay valid for qemu-img (dynamic ones)
and for our reader (chains) at every step. One VM's state is changed under a lock and written
atomically (``os.replace``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ...errors import E3Error
from ...formats.vhdx.differencing import create_differencing
from ...formats.vhdx.reader import VhdxReader
from ...formats.vhdx.update import VhdxUpdater
from ...sources.extents import ExtentList
from .host import (
    CONFIG_DIR,
    CONSISTENCY_APPLICATION,
    DISKS_DIR,
    ERROR_VHD_CHANGE_TRACKING_DISABLED,
    ERROR_VHD_INVALID_CHANGE_TRACKING_ID,
    ERROR_VHD_MISSING_CHANGE_TRACKING_INFORMATION,
    Checkpoint,
    CheckpointFiles,
    ConsistencyUnavailable,
    FrozenDisk,
    HyperVError,
    RctError,
    ReferencePoint,
    VirtualDisk,
    VmInfo,
    restored_disk_name,
)

VM_FILE = "vm.json"
CHECKPOINTS = "checkpoints"
INTEGRATION_SERVICES = ("Heartbeat", "Key-Value Pair Exchange", "Shutdown", "Time Synchronization", "VSS")


class SimHost:
    """A simulated Hyper-V host rooted at ``root`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        if not os.path.isdir(self.root):
            raise HyperVError(f"simulated Hyper-V host {self.root}: no such directory")
        self.name = f"sim:{self.root}"
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # -- building a host (demos, tests) ----------------------------------------------------------

    @classmethod
    def create(cls, root: str | os.PathLike[str]) -> SimHost:
        os.makedirs(root, exist_ok=True)
        return cls(root)

    def create_vm(
        self,
        name: str,
        disk_sizes: Sequence[int],
        *,
        differencing: Sequence[bool] = (),
        guest_os: str = "windows",
        can_freeze: bool = True,
        version: str = "9.0",
        generation: int = 2,
        state: str = "Running",
        change_tracking: bool = True,
    ) -> VmInfo:
        """A VM with dynamic VHDX disks of ``disk_sizes`` (made by ``qemu-img create``); a disk
        whose ``differencing`` flag is set is an AVHDX child of its base (as after a user
        checkpoint or when made from a template)."""
        vm_dir = os.path.join(self.root, name)
        if os.path.exists(vm_dir):
            raise HyperVError(f"{self.name}: VM {name!r} exists")
        os.makedirs(vm_dir)
        doc: dict[str, Any] = {
            "id": str(uuid.uuid4()).upper(),
            "name": name,
            "state": state,
            "generation": generation,
            "version": version,
            "guest_os": guest_os,
            "can_freeze": can_freeze,
            "integration_services": {s: True for s in INTEGRATION_SERVICES},
            "disks": [],
            "checkpoints": [],
            "reference_points": [],
        }
        for i, size in enumerate(disk_sizes):
            base = f"disk{i}.vhdx"
            _qemu_img_create(os.path.join(vm_dir, base), size)
            leaf = base
            if i < len(differencing) and differencing[i]:
                leaf = f"disk{i}.avhdx"
                create_differencing(os.path.join(vm_dir, leaf), os.path.join(vm_dir, base))
            doc["disks"].append(_new_disk(leaf, f"SCSI 0:{i}", change_tracking))
        self._save(name, doc)
        return self._info(doc)

    def guest_write(self, vm: str, disk: int | str, offset: int, data: bytes) -> None:
        """What the guest writes to its disk ``disk`` (index or identifier): into the current
        leaf file, recorded as an RCT range."""
        with self._vm(self._name_of(vm)) as doc:
            d = _disk(doc, disk)
            with VhdxUpdater(self._path(doc, d["file"])) as u:
                u.write_at(offset, data)
            t = d["tracking"]
            t["seq"] += 1
            if t["enabled"]:
                t["writes"].append([t["seq"], offset, len(data)])

    def make_differencing(self, vm: str, disk: int | str) -> None:
        """Give the disk a permanent AVHDX child for the writes that follow (what a user
        checkpoint does); the disk is then read through its chain."""
        with self._vm(self._name_of(vm)) as doc:
            d = _disk(doc, disk)
            child = f"{os.path.splitext(d['file'])[0]}-diff.avhdx"
            create_differencing(self._path(doc, child), self._path(doc, d["file"]))
            d["file"] = child

    def guest_read(self, vm: str, disk: int | str) -> bytes:
        """The disk's whole current content, as the guest sees it (small disks: tests)."""
        doc = self._load(self._name_of(vm))
        with VhdxReader(self._path(doc, _disk(doc, disk)["file"])) as r:
            return r.read_at(0, r.virtual_size)

    def disable_change_tracking(self, vm: str, disk: int | str) -> None:
        with self._vm(self._name_of(vm)) as doc:
            t = _disk(doc, disk)["tracking"]
            t.update(enabled=False, writes=[])

    def forget_tracking_before(self, vm: str, disk: int | str) -> None:
        """Drop the kept RCT log (Hyper-V keeps a bounded one in the .mrt/.rct files)."""
        with self._vm(self._name_of(vm)) as doc:
            t = _disk(doc, disk)["tracking"]
            t.update(floor=t["seq"], writes=[])

    def add_disk(self, vm: str, size: int) -> str:
        with self._vm(self._name_of(vm)) as doc:
            i = len(doc["disks"])
            base = f"disk{i}-{uuid.uuid4().hex[:6]}.vhdx"
            _qemu_img_create(self._path(doc, base), size)
            disk = _new_disk(base, f"SCSI 0:{i}", True)
            doc["disks"].append(disk)
            return str(disk["identifier"])

    def detach_disk(self, vm: str, disk: int | str) -> None:
        with self._vm(self._name_of(vm)) as doc:
            doc["disks"].remove(_disk(doc, disk))

    def vm_dir(self, vm: str) -> str:
        return os.path.join(self.root, self._name_of(vm))

    # -- HyperVHost ------------------------------------------------------------------------------

    def list_vms(self) -> list[VmInfo]:
        out = []
        for name in sorted(os.listdir(self.root)):
            if os.path.isfile(os.path.join(self.root, name, VM_FILE)):
                out.append(self._info(self._load(name)))
        return out

    def enable_change_tracking(self, vm_id: str) -> None:
        with self._vm(self._name_of(vm_id)) as doc:
            for d in doc["disks"]:
                t = d["tracking"]
                if not t["enabled"]:
                    t.update(enabled=True, guid=str(uuid.uuid4()), floor=t["seq"], writes=[])

    def create_checkpoint(self, vm_id: str, consistency: str, name: str) -> Checkpoint:
        with self._vm(self._name_of(vm_id)) as doc:
            if consistency == CONSISTENCY_APPLICATION:
                problem = _freeze_problem(doc)
                if problem:
                    raise ConsistencyUnavailable(problem)
            cid = f"Microsoft:{str(uuid.uuid4()).upper()}"
            short = cid.split(":", 1)[1][:8].lower()
            disks: dict[str, dict[str, Any]] = {}
            for d in doc["disks"]:
                frozen = d["file"]
                child = f"{os.path.splitext(frozen)[0].split('_')[0]}_{short}.avhdx"
                create_differencing(self._path(doc, child), self._path(doc, frozen))
                disks[d["identifier"]] = {"frozen": frozen, "child": child, "seq": d["tracking"]["seq"],
                                          "vm_path": d.get("vm_path") or frozen}
                d["file"] = child
            config_dir = os.path.join(self.root, doc["name"], CHECKPOINTS, short)
            os.makedirs(config_dir, exist_ok=True)
            config = {k: doc[k] for k in ("id", "name", "generation", "version", "guest_os")}
            config["disks"] = [{"identifier": i, "file": v["vm_path"]} for i, v in disks.items()]
            _write_json(os.path.join(config_dir, VM_FILE), config)
            doc["checkpoints"].append({"id": cid, "name": name, "consistency": consistency, "disks": disks,
                                       "config": os.path.join(CHECKPOINTS, short, VM_FILE)})
            return Checkpoint(cid, doc["id"], name, consistency)

    def recovery_checkpoints(self, vm_id: str) -> list[Checkpoint]:
        doc = self._load(self._name_of(vm_id))
        return [Checkpoint(c["id"], doc["id"], c["name"], c["consistency"]) for c in doc["checkpoints"]]

    def checkpoint_files(self, checkpoint: Checkpoint) -> CheckpointFiles:
        doc = self._load(self._name_of(checkpoint.vm_id))
        c = _checkpoint(doc, checkpoint)
        disks = []
        for ident, v in c["disks"].items():
            path = self._path(doc, v["frozen"])
            with VhdxReader(path) as r:
                size = r.virtual_size
            disks.append(FrozenDisk(ident, path, self._path(doc, v["vm_path"]), size))
        return CheckpointFiles(tuple(disks), (self._path(doc, c["config"]),))

    def changed_ranges(self, checkpoint: Checkpoint, disk: FrozenDisk, rct_id: str) -> list[tuple[int, int]]:
        doc = self._load(self._name_of(checkpoint.vm_id))
        c = _checkpoint(doc, checkpoint)
        d = _disk(doc, disk.identifier)
        t = d["tracking"]
        if not t["enabled"]:
            raise RctError(f"{disk.path}: change tracking is disabled", ERROR_VHD_CHANGE_TRACKING_DISABLED)
        parts = rct_id.split(":")
        if len(parts) != 3 or parts[0] != "rctX" or parts[1] != t["guid"] or not parts[2].isdigit():
            raise RctError(f"{disk.path}: RCT ID {rct_id} is not valid", ERROR_VHD_INVALID_CHANGE_TRACKING_ID)
        since, until = int(parts[2]), c["disks"][disk.identifier]["seq"]
        if since > until:
            raise RctError(f"{disk.path}: RCT ID {rct_id} is newer than the checkpoint",
                           ERROR_VHD_INVALID_CHANGE_TRACKING_ID)
        if since < t.get("floor", 0):
            raise RctError(f"{disk.path}: no change tracking information for RCT ID {rct_id}",
                           ERROR_VHD_MISSING_CHANGE_TRACKING_INFORMATION)
        ranges = ExtentList([(o, n) for seq, o, n in t["writes"] if since < seq <= until and n])
        return [(r.offset, r.length) for r in ranges]

    def reference_points(self, vm_id: str) -> list[ReferencePoint]:
        doc = self._load(self._name_of(vm_id))
        return [ReferencePoint(p["id"], doc["id"], dict(p["rct_ids"])) for p in doc["reference_points"]]

    def convert_to_reference_point(self, checkpoint: Checkpoint) -> ReferencePoint:
        with self._vm(self._name_of(checkpoint.vm_id)) as doc:
            c = _checkpoint(doc, checkpoint)
            rct: dict[str, str] = {}
            for ident, v in c["disks"].items():
                t = next((d["tracking"] for d in doc["disks"] if d["identifier"] == ident), None)
                if t is not None and t["enabled"]:
                    rct[ident] = f"rctX:{t['guid']}:{v['seq']}"
            self._merge(doc, c)
            point_id = str(uuid.uuid4()).upper()
            doc["reference_points"].append({"id": point_id, "rct_ids": rct})
            return ReferencePoint(point_id, doc["id"], rct)

    def remove_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self._vm(self._name_of(checkpoint.vm_id)) as doc:
            self._merge(doc, _checkpoint(doc, checkpoint))

    def remove_reference_point(self, point: ReferencePoint) -> None:
        with self._vm(self._name_of(point.vm_id)) as doc:
            doc["reference_points"] = [p for p in doc["reference_points"] if p["id"] != point.id]

    def import_vm(self, folder: str, name: str, new_id: bool, replace: bool) -> VmInfo:
        config = _read_json(os.path.join(folder, CONFIG_DIR, VM_FILE))
        vm_id = str(uuid.uuid4()).upper() if new_id else str(config["id"])
        if replace:
            for info in self.list_vms():
                if info.id == vm_id:
                    shutil.rmtree(os.path.join(self.root, info.name))
        if any(info.id == vm_id for info in self.list_vms()):
            raise HyperVError(f"{self.name}: a VM with ID {vm_id} exists (restore as a new VM, or replace it)")
        vm_dir = os.path.join(self.root, name)
        if os.path.exists(vm_dir):
            raise HyperVError(f"{self.name}: VM {name!r} exists")
        os.makedirs(vm_dir)
        doc: dict[str, Any] = {
            "id": vm_id, "name": name, "state": "Off", "generation": config.get("generation", 2),
            "version": config.get("version", "9.0"), "guest_os": config.get("guest_os", "unknown"),
            "can_freeze": True, "integration_services": {s: True for s in INTEGRATION_SERVICES},
            "disks": [], "checkpoints": [], "reference_points": [],
        }
        for i, d in enumerate(config["disks"]):
            file = restored_disk_name(d["file"])
            shutil.copyfile(os.path.join(folder, DISKS_DIR, file), os.path.join(vm_dir, file))
            disk = _new_disk(file, f"SCSI 0:{i}", True)
            disk["identifier"] = d["identifier"] if not new_id else disk["identifier"]
            doc["disks"].append(disk)
        self._save(name, doc)
        return self._info(doc)

    # -- internals -------------------------------------------------------------------------------

    def _merge(self, doc: dict[str, Any], c: dict[str, Any]) -> None:
        """Remove checkpoint ``c``: each child AVHDX is merged into the frozen file and deleted,
        unless a later checkpoint froze that child: then it stays in the chain (as a merge Hyper-V
        would do later), which changes no byte the guest sees."""
        later = {x["disks"][i]["frozen"] for x in doc["checkpoints"] if x["id"] != c["id"] for i in x["disks"]}
        for ident, v in c["disks"].items():
            child, frozen = self._path(doc, v["child"]), self._path(doc, v["frozen"])
            if v["child"] in later:
                continue
            if os.path.exists(child):
                with VhdxReader(child) as r, VhdxUpdater(frozen) as u:
                    for off, n in r.present_extents():
                        u.write_at(off, r.read_at(off, n))
                os.unlink(child)
            for d in doc["disks"]:
                if d["identifier"] == ident and d["file"] == v["child"]:
                    d["file"] = v["frozen"]
        doc["checkpoints"] = [x for x in doc["checkpoints"] if x["id"] != c["id"]]
        shutil.rmtree(os.path.dirname(self._path(doc, c["config"])), ignore_errors=True)

    def _info(self, doc: dict[str, Any]) -> VmInfo:
        disks = []
        for d in doc["disks"]:
            path = self._path(doc, d["file"])
            try:
                with VhdxReader(path) as r:
                    size = r.virtual_size
            except (OSError, E3Error):
                size = 0  # listed all the same: its backup fails and says why
            file_size = os.path.getsize(path) if os.path.exists(path) else 0
            disks.append(VirtualDisk(d["identifier"], path, size, file_size, d.get("controller", "")))
        return VmInfo(
            id=doc["id"],
            name=doc["name"],
            state=doc["state"],
            generation=doc["generation"],
            version=doc["version"],
            disks=tuple(disks),
            integration_services=dict(doc["integration_services"]),
            guest_os=doc["guest_os"],
            change_tracking=all(d["tracking"]["enabled"] for d in doc["disks"]),
        )

    def _path(self, doc: dict[str, Any], file: str) -> str:
        return os.path.join(self.root, doc["name"], file)

    def _name_of(self, vm: str) -> str:
        """A VM name or ID -> its folder name."""
        if os.path.isfile(os.path.join(self.root, vm, VM_FILE)):
            return vm
        for name in os.listdir(self.root):
            p = os.path.join(self.root, name, VM_FILE)
            if os.path.isfile(p) and str(_read_json(p)["id"]).lower() == vm.lower():
                return name
        raise HyperVError(f"{self.name}: no VM named or with ID {vm!r}")

    def _load(self, name: str) -> dict[str, Any]:
        return _read_json(os.path.join(self.root, name, VM_FILE))

    def _save(self, name: str, doc: dict[str, Any]) -> None:
        _write_json(os.path.join(self.root, name, VM_FILE), doc)

    @contextmanager
    def _vm(self, name: str) -> Iterator[dict[str, Any]]:
        with self._locks_guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            doc = self._load(name)
            try:
                yield doc
            finally:
                self._save(name, doc)  # what was done to the files is recorded even on an error


def _freeze_problem(doc: dict[str, Any]) -> str | None:
    if not doc["integration_services"].get("VSS", False):
        return "the Backup (volume shadow copy) integration service is off"
    if doc["state"] != "Running":
        return None  # an off VM is consistent as it is
    if not doc.get("can_freeze", True):
        if doc["guest_os"] == "linux":
            return "the guest did not freeze its file systems (is hv_vss_daemon from hyperv-daemons running?)"
        return "the guest's VSS writers did not respond"
    return None


def _new_disk(file: str, controller: str, tracking: bool) -> dict[str, Any]:
    return {
        "identifier": str(uuid.uuid4()).upper(),
        "file": file,
        "vm_path": file,
        "controller": controller,
        "tracking": {"enabled": tracking, "guid": str(uuid.uuid4()), "seq": 0, "floor": 0, "writes": []},
    }


def _disk(doc: dict[str, Any], disk: int | str) -> dict[str, Any]:
    disks: list[dict[str, Any]] = doc["disks"]
    if isinstance(disk, int):
        if not 0 <= disk < len(disks):
            raise HyperVError(f"VM {doc['name']}: no disk {disk}")
        return disks[disk]
    for d in disks:
        if d["identifier"] == disk:
            return d
    raise HyperVError(f"VM {doc['name']}: no disk {disk}")


def _checkpoint(doc: dict[str, Any], checkpoint: Checkpoint) -> dict[str, Any]:
    for c in doc["checkpoints"]:
        if c["id"] == checkpoint.id:
            return dict(c)
    raise HyperVError(f"VM {doc['name']}: no checkpoint {checkpoint.id}")


def _qemu_img_create(path: str, size: int) -> None:
    try:
        p = subprocess.run(["qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=dynamic", path, str(size)],
                           capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise HyperVError("the simulated host makes its disks with qemu-img: install qemu-utils") from e
    if p.returncode:
        raise HyperVError(f"qemu-img create {path}: {p.stderr.strip()}")


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise HyperVError(f"{path}: cannot read: {e}") from e
    if not isinstance(doc, dict):
        raise HyperVError(f"{path}: not a JSON object")
    return doc


def _write_json(path: str, doc: dict[str, Any]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


__all__ = ["SimHost"]
