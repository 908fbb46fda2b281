"""The whole path through the CLI on the simulated host: full, guest writes, RCT incremental
reading only the changed chunks, restore of each disk as VHDX judged by qemu-img and restic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e3backup.repo import Repository
from e3backup.sources.hyperv.sim import SimHost

from ...helpers import restic, run_cli
from .conftest import MiB, assert_same_disk, fill, web_vm

CHUNK = MiB  # the image engine's chunk size for a new chain of a small disk (auto_chunk_size)


def _summary(out: str) -> dict[str, object]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return next(d for d in lines if d.get("message_type") == "summary" and "vms" in d)


def _events(out: str) -> list[dict[str, object]]:
    docs = (json.loads(x) for x in out.splitlines() if x.startswith("{"))
    return [d for d in docs if d.get("message_type") == "event"]


def test_full_then_rct_incremental_then_restore_each_disk(
    sim: SimHost, repo: Repository, repo_path: Path, password_env: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    web_vm(sim)
    host = f"sim:{sim.root}"
    state = tmp_path / "state.json"
    listed = run_cli(capsys, "hyperv", "list", "--host", host, "--json")
    assert listed.code == 0, listed.err
    vm = json.loads(listed.out)["vms"][0]
    assert (vm["name"], vm["rct_supported"], len(vm["disks"])) == ("web", True, 2)
    assert vm["disks"][1]["path"].endswith("-diff.avhdx")

    full_expected = [sim.guest_read("web", 0), sim.guest_read("web", 1)]
    args = ("-r", str(repo_path), "hyperv", "backup", "web", "--host", host, "--state", str(state), "--json")
    full = run_cli(capsys, *args)
    assert full.code == 0, full.err
    s = _summary(full.out)
    vmr = s["vms"][0]  # type: ignore[index]
    assert vmr["backup_type"] == "full" and vmr["error"] is None
    assert [d["backup_type"] for d in vmr["disks"]] == ["full", "full"]
    assert vmr["bytes_read"] == 64 * MiB  # every byte of both disks (no file system: read whole)
    assert set(vmr["rct_ids"]) == {d["identifier"] for d in vm["disks"]}
    assert sim.recovery_checkpoints("web") == []  # converted to a reference point
    assert len(sim.reference_points("web")) == 1
    assert sorted(p.name for p in Path(sim.vm_dir("web")).glob("*.avhdx")) == ["disk1-diff.avhdx"]

    # the guest writes: 10 KiB inside one chunk of disk 0, 4 KiB across the chunk 4/5 border of disk 1
    fill(sim, "web", 0, 5 * MiB, 10 * 1024, 6)
    fill(sim, "web", 1, 5 * CHUNK - 2048, 4096, 7)
    incr_expected = [sim.guest_read("web", 0), sim.guest_read("web", 1)]
    incr = run_cli(capsys, *args)
    assert incr.code == 0, incr.err
    vmr2 = _summary(incr.out)["vms"][0]  # type: ignore[index]
    assert vmr2["backup_type"] == "incremental", [e["message"] for e in _events(incr.out) if e["level"] != "info"]
    assert [d["backup_type"] for d in vmr2["disks"]] == ["incremental", "incremental"]
    assert vmr2["changed_bytes"] == 10 * 1024 + 4096
    assert [d["bytes_read"] for d in vmr2["disks"]] == [CHUNK, 2 * CHUNK]  # only the touched chunks
    assert not [e for e in _events(incr.out) if e["code"] == "HYPERV_RCT_CHAIN_BROKEN"]
    assert vmr2["rct_ids"] != vmr["rct_ids"]
    assert len(sim.reference_points("web")) == 1  # the previous one was dropped

    # restore the latest (incremental) backup and the first one, each disk as VHDX
    for checkpoint, expected, name in ((vmr2["checkpoint_id"], incr_expected, "latest"),
                                       (vmr["checkpoint_id"], full_expected, "first")):
        target = tmp_path / f"restore-{name}"
        out = run_cli(capsys, "-r", str(repo_path), "hyperv", "restore", "web", str(target),
                      "--checkpoint", str(checkpoint), "--json")
        assert out.code == 0, out.err
        doc = json.loads(out.out.splitlines()[-1])
        assert [Path(d["file"]).name for d in doc["disks"]] == ["disk0.vhdx", "disk1.vhdx"]
        assert [Path(f).name for f in doc["config_files"]] == ["vm.json"]
        for i in (0, 1):
            assert_same_disk(target / "Virtual Hard Disks" / f"disk{i}.vhdx", expected[i], tmp_path)
    restic(repo_path, "check", "--read-data")
    snaps = json.loads(restic(repo_path, "snapshots", "--json").stdout)
    assert len(snaps) == 6  # per run: two disks and the configuration
    assert all("hyperv" in s["tags"] and "vm-name:web" in s["tags"] for s in snaps)


def test_sim_commands_and_backup_flags(
    repo: Repository, repo_path: Path, password_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    host_dir = tmp_path / "sim"
    made = run_cli(capsys, "hyperv", "sim-create", str(host_dir), "db", "--disk", "4M", "--disk", "8M",
                   "--differencing", "1", "--linux", "--no-freeze")
    assert made.code == 0, made.err
    assert run_cli(capsys, "hyperv", "sim-write", str(host_dir), "db", "1", "1M", "64K").code == 0
    sim = SimHost(host_dir)
    assert sim.guest_read("db", 1)[MiB : MiB + 65536].count(0) < 65536  # random bytes landed there
    listed = run_cli(capsys, "hyperv", "list", "--host", f"sim:{host_dir}")
    assert "db" in listed.out and "linux" in listed.out and "disk1.avhdx" in listed.out

    args = ("-r", str(repo_path), "hyperv", "backup", "db", "--host", f"sim:{host_dir}", "--json",
            "--state", str(tmp_path / "s.json"), "--consistency", "crash", "--no-rct", "--parallel-vms", "1",
            "--parallel", "1", "--read-plan", "full", "--tag", "nightly", "--hostname", "hv-node-7")
    out = run_cli(capsys, *args)
    assert out.code == 0, out.err
    vm = _summary(out.out)["vms"][0]  # type: ignore[index]
    assert vm["consistency"] == "crash" and vm["bytes_read"] == 12 * MiB
    assert "HYPERV_CONSISTENCY_FALLBACK" not in out.out  # crash asked: nothing to fall back from
    again = run_cli(capsys, *args)  # --no-rct: full again, without a chain-break event
    vm2 = _summary(again.out)["vms"][0]  # type: ignore[index]
    assert vm2["backup_type"] == "full" and "HYPERV_RCT_CHAIN_BROKEN" not in again.out
    state = json.loads((tmp_path / "s.json").read_text())
    assert state["db"]["last_checkpoint_id"] == vm2["checkpoint_id"]
    snaps = json.loads(restic(repo_path, "snapshots", "--json").stdout)
    assert {s["hostname"] for s in snaps} == {"hv-node-7"} and all("nightly" in s["tags"] for s in snaps)

    refused = run_cli(capsys, "-r", str(repo_path), "hyperv", "restore", "db", str(tmp_path / "r"),
                      "--register", "replace", "--host", f"sim:{host_dir}")
    assert refused.code == 2 and "needs confirmation" in refused.err
    missing = run_cli(capsys, "hyperv", "backup", "nosuch", "--host", f"sim:{host_dir}", "-r", str(repo_path))
    assert missing.code != 0
