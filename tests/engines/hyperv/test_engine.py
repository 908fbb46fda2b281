"""``run_hyperv`` on the simulated host: the chain-break matrix, the checkpoint removed on every
exit path, leftovers swept, one failing VM not failing the other, cancel in the middle of a VM."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest

from e3backup.engines.hyperv import HyperVOptions, HyperVResult, VmChain, run_hyperv
from e3backup.engines.hyperv.chain import plan_disk
from e3backup.errors import Cancelled
from e3backup.events import Event, EventCode
from e3backup.repo import Repository
from e3backup.sources.hyperv.host import ERROR_VHD_CHANGE_TRACKING_DISABLED, Checkpoint, FrozenDisk, RctError
from e3backup.sources.hyperv.sim import SimHost

from .conftest import MiB, fill

DISK = 8 * MiB


def backup(sim: SimHost, repo: Repository, chain: dict[str, VmChain] | None = None,
           vms: tuple[str, ...] = ("vm",), cancel_on: Any = None, **kw: Any) -> tuple[HyperVResult, list[Event]]:
    events: list[Event] = []
    cancel = threading.Event()

    def on_event(e: Event) -> None:
        events.append(e)
        if cancel_on is not None and cancel_on(e):
            cancel.set()

    opts = HyperVOptions(host=sim, vms=vms, chain=chain or {}, read_plan="full", **kw)
    return run_hyperv(repo, opts, None, on_event, cancel), events


def chain_of(result: HyperVResult) -> dict[str, VmChain]:
    return {v.name: VmChain(v.id, v.checkpoint_id, dict(v.rct_ids)) for v in result.vms if not v.error}


def broken(events: list[Event]) -> list[str]:
    return [str(e.details["reason"]) for e in events if e.code is EventCode.HYPERV_RCT_CHAIN_BROKEN]


def no_checkpoints_left(sim: SimHost, vm: str = "vm") -> bool:
    from pathlib import Path

    return sim.recovery_checkpoints(vm) == [] and not [
        p for p in Path(sim.vm_dir(vm)).glob("*_*.avhdx")]


@pytest.fixture
def vm(sim: SimHost) -> SimHost:
    sim.create_vm("vm", [DISK, DISK])
    fill(sim, "vm", 0, 0, 1 * MiB, 1)
    fill(sim, "vm", 1, 5 * MiB, 1 * MiB, 2)
    return sim


def test_chain_break_matrix(vm: SimHost, repo: Repository) -> None:
    sim = vm
    first, events = backup(sim, repo)
    assert first.vms[0].backup_type == "full" and broken(events) == []  # a first backup breaks nothing
    chain = chain_of(first)

    # disk 0: tracking reset on the host, the old RCT ID is not valid any more;
    # disk 1: the host kept too little of its change log
    sim.disable_change_tracking("vm", 0)
    fill(sim, "vm", 1, 0, 4096, 9)
    sim.forget_tracking_before("vm", 1)
    r, events = backup(sim, repo, chain)
    assert [d.backup_type for d in r.vms[0].disks] == ["full", "full"]
    assert EventCode.HYPERV_RCT_ENABLED in [e.code for e in events]
    reasons = broken(events)
    assert len(reasons) == 2 and "ERROR_VHD_INVALID_CHANGE_TRACKING_ID" in reasons[0]
    assert "ERROR_VHD_MISSING_CHANGE_TRACKING_INFORMATION" in reasons[1]
    chain = chain_of(r)

    # the host kept too little of its change log
    fill(sim, "vm", 1, 0, 4096, 9)
    sim.forget_tracking_before("vm", 1)
    r, events = backup(sim, repo, chain)
    assert [d.backup_type for d in r.vms[0].disks] == ["incremental", "full"]
    assert "ERROR_VHD_MISSING_CHANGE_TRACKING_INFORMATION" in broken(events)[0]
    chain = chain_of(r)

    # the reference point is gone from the host
    for p in sim.reference_points("vm"):
        sim.remove_reference_point(p)
    r, events = backup(sim, repo, chain)
    assert r.vms[0].backup_type == "full" and len(broken(events)) == 2
    assert all(b.startswith("reference point missing") for b in broken(events))
    chain = chain_of(r)

    # the repository has no snapshot from the checkpoint the chain names
    wrong = {"vm": replace(chain["vm"], last_checkpoint_id="Microsoft:NOT-A-CHECKPOINT")}
    r, events = backup(sim, repo, wrong)
    assert r.vms[0].backup_type == "full"
    assert all("no snapshot of the disk from checkpoint Microsoft:NOT-A-CHECKPOINT" in b for b in broken(events))
    chain = chain_of(r)

    # a disk added and one removed: the new one full, the kept one incremental
    added = sim.add_disk("vm", DISK)
    sim.detach_disk("vm", 0)
    r, events = backup(sim, repo, chain)
    kinds = {d.identifier: d.backup_type for d in r.vms[0].disks}
    assert kinds[added] == "full" and sorted(kinds.values()) == ["full", "incremental"]
    assert sorted(broken(events)) == ["disk added since the last backup", "disk removed"]
    chain = chain_of(r)

    # RCT off for the job: every disk read whole, no event (nothing is broken)
    r, events = backup(sim, repo, chain, enable_rct=False)
    assert r.vms[0].backup_type == "full" and broken(events) == []
    assert r.vms[0].bytes_read == 2 * DISK
    assert no_checkpoints_left(sim)


def test_a_resized_disk_is_read_in_full(vm: SimHost, repo: Repository) -> None:
    first, _ = backup(vm, repo)
    v = first.vms[0]
    snap = next(s for s in repo.snapshots() if f"disk:{v.disks[0].identifier}" in s.tags)
    repo.load_index()
    grown = FrozenDisk(v.disks[0].identifier, "/frozen", v.disks[0].vm_path, DISK + MiB)
    plan = plan_disk(repo, grown, chain_of(first)["vm"], True, vm.reference_points("vm"), snap)
    assert plan.rct_id is None and plan.reason == f"disk resized ({DISK} -> {DISK + MiB} bytes)"
    same = replace(grown, size=DISK)
    assert plan_disk(repo, same, chain_of(first)["vm"], True, vm.reference_points("vm"), snap).rct_id


def test_tracking_disabled_on_the_host_is_the_documented_error(vm: SimHost, repo: Repository) -> None:
    first, _ = backup(vm, repo)
    vm.disable_change_tracking("vm", 0)
    c = vm.create_checkpoint(first.vms[0].id, "crash", "e3backup-probe")
    try:
        disk = next(d for d in vm.checkpoint_files(c).disks if d.identifier == first.vms[0].disks[0].identifier)
        with pytest.raises(RctError) as e:
            vm.changed_ranges(c, disk, first.vms[0].rct_ids[disk.identifier])
        assert e.value.code == ERROR_VHD_CHANGE_TRACKING_DISABLED
    finally:
        vm.remove_checkpoint(c)


def test_checkpoint_removed_when_a_disk_fails_and_the_other_vm_goes_on(vm: SimHost, repo: Repository) -> None:
    """A disk of ``vm`` cannot be stored (the repository's disk is full, say): that VM fails with
    its checkpoint removed; ``ok`` is backed up all the same."""
    import e3backup.engines.hyperv.backup as engine

    sim = vm
    sim.create_vm("ok", [DISK])
    fill(sim, "ok", 0, 0, MiB, 3)
    real = engine.run_image_backup

    def failing(repo: Repository, opts: Any, *a: Any, **kw: Any) -> Any:
        if opts.source.endswith("/vm/disk1.vhdx"):
            raise OSError(28, "No space left on device")
        return real(repo, opts, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "run_image_backup", failing)
        r, events = backup(sim, repo, vms=("vm", "ok"))
    by = {v.name: v for v in r.vms}
    assert by["vm"].error == "[Errno 28] No space left on device"
    assert by["ok"].error is None and by["ok"].backup_type == "full"
    assert EventCode.HYPERV_CHECKPOINT_REMOVED in [e.code for e in events if e.details.get("vm") == "vm"]
    assert no_checkpoints_left(sim, "vm") and sim.reference_points("vm") == []
    assert no_checkpoints_left(sim, "ok") and len(sim.reference_points("ok")) == 1


def test_cancel_in_the_middle_of_a_vm_removes_its_checkpoint(vm: SimHost, repo: Repository) -> None:
    started: list[str] = []

    def second_disk_started(e: Event) -> bool:
        if e.code is EventCode.DISK_IMAGE_STREAM_START:
            started.append(str(e.details["source"]))
        return len(started) == 2  # the VM's first disk is saved, its second one is being read

    with pytest.raises(Cancelled, match="every checkpoint it took was removed"):
        backup(vm, repo, cancel_on=second_disk_started)
    assert no_checkpoints_left(vm) and vm.reference_points("vm") == []
    assert len(started) == 2


def test_leftover_checkpoints_of_a_killed_run_are_swept(vm: SimHost, repo: Repository) -> None:
    info = vm.list_vms()[0]
    vm.create_checkpoint(info.id, "crash", "e3backup-killedrun")  # what a killed run leaves
    foreign = vm.create_checkpoint(info.id, "crash", "VeeamRecovery")  # another product's: left alone
    before = vm.guest_read("vm", 0)
    r, events = backup(vm, repo)
    assert r.vms[0].error is None
    swept = [e for e in events if e.code is EventCode.HYPERV_CHECKPOINT_LEFTOVER_REMOVED]
    assert [e.details["checkpoint"] for e in swept] != [] and all(
        e.details["checkpoint"] != foreign.id for e in swept)
    assert [c.id for c in vm.recovery_checkpoints("vm")] == [foreign.id]
    assert vm.guest_read("vm", 0) == before  # removing checkpoints changed nothing the guest sees
    vm.remove_checkpoint(foreign)
    assert vm.guest_read("vm", 0) == before


def test_consistency_and_parallel_vms_options(vm: SimHost, repo: Repository) -> None:
    sim = vm
    sim.create_vm("two", [DISK])
    real = SimHost.create_checkpoint
    together = threading.Barrier(2, timeout=30)

    def meet(self: SimHost, vm_id: str, consistency: str, name: str) -> Checkpoint:
        together.wait()  # only passes when both VMs take their checkpoints at the same time
        return real(self, vm_id, consistency, name)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SimHost, "create_checkpoint", meet)
        r, events = backup(sim, repo, vms=("vm", "two"), parallel_vms=2, consistency="crash")
    assert [v.consistency for v in r.vms] == ["crash", "crash"] and not [v for v in r.vms if v.error]
    assert EventCode.HYPERV_CONSISTENCY_FALLBACK not in [e.code for e in events]

    r, events = backup(sim, repo, vms=("vm", "two"), parallel_vms=1)
    order = [(e.code, e.details["vm"]) for e in events
             if e.code in (EventCode.HYPERV_VM_STARTED, EventCode.HYPERV_VM_COMPLETED)]
    assert order == [(EventCode.HYPERV_VM_STARTED, "vm"), (EventCode.HYPERV_VM_COMPLETED, "vm"),
                     (EventCode.HYPERV_VM_STARTED, "two"), (EventCode.HYPERV_VM_COMPLETED, "two")]
    assert [v.consistency for v in r.vms] == ["application", "application"]


def test_restore_one_disk_raw_in_place_with_confirmation_and_cross_host(
    vm: SimHost, repo: Repository, tmp_path: Any
) -> None:
    from e3backup.engines.hyperv import HyperVRestoreOptions, run_hyperv_restore
    from e3backup.errors import UsageError

    first, _ = backup(vm, repo)
    at_backup = [vm.guest_read("vm", 0), vm.guest_read("vm", 1)]
    ident = first.vms[0].disks[1].identifier
    one = run_hyperv_restore(repo, HyperVRestoreOptions(target=str(tmp_path / "one"), vm="vm", disk=ident,
                                                        image_format="raw"))
    assert [d["identifier"] for d in one.disks] == [ident] and one.config_files == []
    assert (tmp_path / "one" / "Virtual Hard Disks" / "disk1.img").read_bytes() == at_backup[1]

    with pytest.raises(UsageError, match="needs confirmation"):
        HyperVRestoreOptions(target=str(tmp_path / "x"), vm="vm", register="replace", host=vm)
    fill(vm, "vm", 0, 0, 4096, 42)  # the guest goes on writing; then the VM is put back as it was
    vm_id = first.vms[0].id
    back = run_hyperv_restore(repo, HyperVRestoreOptions(target=str(tmp_path / "back"), vm=vm_id, register="replace",
                                                         confirm_replace=True, host=vm))
    assert back.registered_vm is not None and back.registered_vm["id"] == vm_id
    assert [v.name for v in vm.list_vms()] == ["vm"]
    assert [vm.guest_read("vm", 0), vm.guest_read("vm", 1)] == at_backup

    # cross-host: another host registers the same backup as a new VM
    other = SimHost.create(tmp_path / "host-b")
    moved = run_hyperv_restore(repo, HyperVRestoreOptions(target=str(tmp_path / "b"), vm="vm", register="new",
                                                          host=other, vm_name="vm-moved"))
    assert moved.registered_vm is not None and moved.registered_vm["id"] != vm_id
    assert [other.guest_read("vm-moved", 0), other.guest_read("vm-moved", 1)] == at_backup
