"""Hyper-V jobs through the server and the agent, on the simulated host (``hyperv_host: sim:DIR``):
discovery in the disk report, Full then RCT Incremental with the chain kept by the server, one
failed VM not failing the other, and the ``hyperv_restore`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from e3backup.agent.runner import Agent
from e3backup.sources.hyperv.sim import SimHost

from ..engines.hyperv.conftest import MiB, assert_same_disk, fill
from .conftest import REPO_PASSWORD, Harness


def _hyperv_job(h: Harness, agent: Agent, vms: list[str]) -> dict[str, Any]:
    body = {
        "name": "hyper-v", "engine": "hyperv", "agent_id": agent.config.agent_id,
        "hyperv_config": {"vms": vms, "enable_rct": True, "consistency_level": "application"},
        "policy": {"parallel_vms": 2, "disk_image_bitmap": False},  # read whole: no READ_PLAN_FALLBACK
        "destination": {"type": "local", "path": str(h.tmp / "repo"), "repository_password": REPO_PASSWORD},
    }
    return dict(h.api("POST", "/api/jobs", json=body).json())


def _run(h: Harness, agent: Agent, job_id: int) -> dict[str, Any]:
    run_id = h.run_job(job_id)
    assert agent.poll_once()
    return h.finish(agent, run_id)


def test_discovery_full_incremental_and_a_failing_vm(harness: Harness) -> None:
    h = harness
    sim = SimHost.create(h.tmp / "host")
    sim.create_vm("app", [16 * MiB, 8 * MiB])
    sim.create_vm("db", [12 * MiB], guest_os="linux", can_freeze=False)
    fill(sim, "app", 0, 0, 2 * MiB, 1)
    fill(sim, "app", 1, 4 * MiB, 1 * MiB, 2)
    fill(sim, "db", 0, 1 * MiB, 3 * MiB, 3)
    agent, _ = h.make_agent(hyperv_host=f"sim:{sim.root}")

    # discovery: the VMs come with the disk report, and the agent says it runs hyperv
    agent.report_disks()
    reported = h.api("GET", f"/api/agents/{agent.config.agent_id}/disks").json()
    vms = {v["name"]: v for v in reported["hyperv_vms"]}
    assert set(vms) == {"app", "db"}
    assert vms["db"]["guest_os"] == "linux" and vms["app"]["rct_supported"] is True
    assert [d["size"] for d in vms["app"]["disks"]] == [16 * MiB, 8 * MiB]

    job = _hyperv_job(h, agent, ["app", "db"])
    first = _run(h, agent, job["id"])
    # a warning: the Linux guest could not freeze (every VM was backed up)
    assert first["status"] == "warning" and "hv_vss_daemon" in first["error_summary"], first["error_summary"]
    assert first["backup_type"] == "full"
    results = {r["vm_name"]: r for r in first["hyperv_results"]}
    assert results["app"]["backup_type"] == "full" and results["app"]["consistency_level"] == "application"
    # the Linux guest cannot freeze: crash-consistent, said by an event
    assert results["db"]["consistency_level"] == "crash"
    events = h.events(first["id"])
    fallback = [e for e in events if e["code"] == "HYPERV_CONSISTENCY_FALLBACK"]
    assert fallback and "hv_vss_daemon" in fallback[0]["message"]

    fill(sim, "app", 0, 9 * MiB, 4096, 4)
    second = _run(h, agent, job["id"])
    assert second["status"] == "warning" and "HYPERV_CONSISTENCY_FALLBACK" in second["error_summary"], second
    results2 = {r["vm_name"]: r for r in second["hyperv_results"]}
    assert results2["app"]["backup_type"] == "incremental"
    assert results2["app"]["changed_bytes"] == 4096
    assert results2["db"]["backup_type"] == "incremental" and results2["db"]["changed_bytes"] == 0
    assert results2["app"]["rct_ids"] != results["app"]["rct_ids"]
    assert "HYPERV_RCT_CHAIN_BROKEN" not in h.codes(second["id"])

    # one VM fails (its disk file is damaged), the other is backed up: the run is a warning
    db_disk = Path(sim.vm_dir("db")) / "disk0.vhdx"
    with open(db_disk, "r+b") as f:
        f.seek(64 * 1024)
        f.write(b"\0" * 8192)  # both headers' first bytes: not a VHDX any more
        f.seek(128 * 1024)
        f.write(b"\0" * 8192)
    fill(sim, "app", 1, 0, 8192, 5)
    third = _run(h, agent, job["id"])
    assert third["status"] == "warning", third
    results3 = {r["vm_name"]: r for r in third["hyperv_results"]}
    assert results3["app"]["error"] is None and results3["app"]["backup_type"] == "incremental"
    assert "db" in third["error_summary"] and results3["db"]["error"]
    assert "HYPERV_VM_FAILED" in h.codes(third["id"])
    assert sim.recovery_checkpoints("app") == []

    # hyperv_restore of the app VM's latest backup, every disk as VHDX
    expected = [sim.guest_read("app", 0), sim.guest_read("app", 1)]
    target = h.tmp / "restores" / "app"
    cmd = h.command(agent, "hyperv_restore", job["id"], snapshot_id="latest", vm="app", target_path=str(target))
    run_id = int(cmd["run_id"])
    h.wait_for(lambda: agent.commands.poll_once() or True, message="command taken")
    restored = h.finish(agent, run_id)
    assert restored["status"] == "success", restored
    for i in (0, 1):
        assert_same_disk(target / "Virtual Hard Disks" / f"disk{i}.vhdx", expected[i], h.tmp)
    assert (target / "Virtual Machines" / "vm.json").is_file()
