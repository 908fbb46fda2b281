"""The agent against the in-process server: backups, restores, maintenance, refusals."""

from __future__ import annotations

import filecmp
import os
import random
from pathlib import Path

import pytest

from e3backup.agent.client import ServerClient
from e3backup.agent.config import AgentConfig, load_config, save_config
from e3backup.agent.disks import parse_lsblk

from .conftest import RECORDINGS, REPO_PASSWORD, Harness


def _tree(root: Path, seed: int = 1) -> Path:
    rnd = random.Random(seed)
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(rnd.randbytes(1_500_000))
    (root / "sub" / "b.txt").write_text("hello\n" * 1000)
    (root / "empty").write_bytes(b"")
    return root


def test_config_round_trip_is_0600(tmp_path: Path) -> None:
    cfg = AgentConfig(server_url="https://b.example/", agent_id=3, agent_token="e3a_secret-token",
                      state_dir=str(tmp_path / "s"), restore_roots=[str(tmp_path)])
    path = save_config(cfg, tmp_path / "etc" / "agent.yaml")
    assert path.stat().st_mode & 0o777 == 0o600
    back = load_config(path)
    assert (back.server_url, back.agent_id, back.agent_token) == ("https://b.example", 3, "e3a_secret-token")
    assert "e3a_secret-token" not in repr(back)
    path.chmod(0o644)
    try:
        load_config(path)
    except Exception as e:
        assert "readable by others" in str(e)
    else:
        raise AssertionError("a world-readable config must be refused")


def test_files_job_full_then_incremental_then_restore(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    src = _tree(tmp_path / "src")
    job = harness.files_job(agent, src)

    run1 = harness.run_job(job["id"])
    assert agent.poll_once()
    r1 = harness.finish(agent, run1)
    assert (r1["status"], r1["backup_type"]) == ("success", "full"), r1
    assert r1["snapshot_id"] and r1["progress_pct"] == 100
    codes = harness.codes(run1)
    assert codes[:1] == ["REPOSITORY_INITIALIZED"], codes

    (src / "sub" / "new.txt").write_text("changed\n")
    run2 = harness.run_job(job["id"])
    assert agent.poll_once()
    r2 = harness.finish(agent, run2)
    assert (r2["status"], r2["backup_type"]) == ("success", "incremental"), r2
    assert harness.codes(run2)[:1] == ["REPOSITORY_OPENED"]

    target = harness.tmp / "restores" / "r1"
    cmd = harness.command(agent, "restore", job["id"], snapshot_id=r2["snapshot_id"], target_path=str(target))
    assert agent.commands.poll_once() == 1
    restore = harness.finish(agent, cmd["run_id"])
    assert restore["status"] == "success", restore
    shown = harness.api("GET", f"/api/commands/{cmd['id']}").json()
    assert shown["status"] == "completed" and shown["result"]["files_restored"] >= 3
    restored = target / str(src).lstrip("/")
    cmp = filecmp.dircmp(src, restored)
    assert not (cmp.left_only or cmp.right_only or cmp.diff_files)
    assert (restored / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    assert agent.state.current_runs() == []


def test_maintenance_and_list_disks_commands(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent(allowed_devices=["/dev/loop9"])
    job = harness.files_job(agent, _tree(tmp_path / "src"), retention={"keep_last": 1})
    for _ in range(2):
        run = harness.run_job(job["id"])
        assert agent.poll_once()
        assert harness.finish(agent, run)["status"] == "success"
    cmd = harness.command(agent, "maintenance", job["id"], mode="quick")
    agent.commands.poll_once()
    m = harness.finish(agent, cmd["run_id"])
    assert m["status"] == "success", m
    result = harness.api("GET", f"/api/commands/{cmd['id']}").json()["result"]
    # retention already forgot the first snapshot after the second backup; maintenance prunes
    assert result["snapshots_removed"] == [] and result["snapshots_kept"] == 1

    agent.start()  # the command loop answers the dashboard's wait
    r = harness.api("POST", f"/api/agents/{agent.config.agent_id}/disks/refresh")
    disks = r.json()["disks"]
    assert [d["path"] for d in disks] == ["/dev/sda"]
    assert [v["mount_point"] for v in disks[0]["volumes"]] == ["/boot/efi", "/"]
    # where it may restore comes along, for the dashboard's restore form
    assert r.json()["restore_roots"] == [str(harness.tmp / "restores")]
    assert r.json()["allowed_devices"] == ["/dev/loop9"]


def test_lsblk_recording_and_the_live_machine() -> None:
    report = parse_lsblk((RECORDINGS / "lsblk.json").read_text())
    assert report.disks[0].model == "Samsung SSD 860"
    assert report.disks[0].volumes[1].filesystem == "ext4"
    if os.path.exists("/usr/bin/lsblk") or os.path.exists("/bin/lsblk"):
        from e3backup.agent.disks import LsblkInventory

        LsblkInventory().report()  # the real tool's output parses


def test_unavailable_engines_fail_the_run_with_an_event(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    job = harness.files_job(agent, tmp_path, engine="hyperv", source_path="",
                            hyperv_config={"vms": ["dc01"]})
    run = harness.run_job(job["id"])
    assert agent.poll_once()
    r = harness.finish(agent, run)
    assert r["status"] == "failed" and "unavailable" in r["error_summary"]
    assert harness.codes(run) == ["ENGINE_UNAVAILABLE"]


def test_password_never_logged_or_sent(harness: Harness, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    from e3backup.agent.logs import SECRETS, RedactingFilter

    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(RedactingFilter())
    agent, _ = harness.make_agent()
    job = harness.files_job(agent, tmp_path / "missing-dir")
    run = harness.run_job(job["id"])
    assert agent.poll_once()
    r = harness.finish(agent, run)
    assert r["status"] == "failed"
    logging.getLogger("test").error("oops: %s", REPO_PASSWORD)  # even a careless log line
    assert REPO_PASSWORD not in caplog.text
    assert "[redacted]" in caplog.text
    assert REPO_PASSWORD not in str(harness.events(run)) + str(r)
    assert SECRETS.redact(f"x{REPO_PASSWORD}y") == "x[redacted]y"


def test_enroll_through_the_client(harness: Harness) -> None:
    from e3backup.agent.client import AuthRejected, ServerRefused
    from e3backup.agent.transport import HttpxTransport

    client = ServerClient(HttpxTransport(harness.client))
    try:
        client.enroll("e3e_wrong", "h", "linux")
    except AuthRejected:
        pass
    except ServerRefused as e:
        assert e.status in (401, 403)
    answer = client.enroll(harness.enrollment_token, "h2", "linux")
    assert answer.agent_token.startswith("e3a_")


@pytest.mark.root
def test_disk_image_job_on_a_loop_device_full_then_incremental(harness: Harness, tmp_path: Path) -> None:
    from tests.sources.diskimages import loop_device, make_ext, sample_files

    image = tmp_path / "disk.img"
    make_ext(image, 32 << 20, sample_files())
    agent, _ = harness.make_agent()
    with loop_device(image) as dev:
        job = harness.files_job(agent, Path(dev), engine="disk_image", source_path="", disk_source_volume=dev,
                                disk_image_format="raw", name="image job")
        types = []
        for _ in range(2):
            run = harness.run_job(job["id"])
            assert agent.poll_once()
            r = harness.finish(agent, run)
            # a run whose events include a warning (read live, no snapshot) ends WARNING
            assert r["status"] == "warning" and "DISK_IMAGE_SNAPSHOT_NONE" in r["error_summary"], r
            types.append(r["backup_type"])
            codes = harness.codes(run)
            assert "DISK_IMAGE_STREAM_START" in codes and codes[-1] == "DISK_IMAGE_STREAM_COMPLETED", codes
        assert types == ["full", "incremental"]
        # the restore command writes the disk back to a sparse file, byte for byte
        target = harness.tmp / "restores" / "disk.raw"
        cmd = harness.command(agent, "restore", job["id"], snapshot_id=r["snapshot_id"], target_path=str(target))
        assert agent.commands.poll_once() == 1
        done = harness.finish(agent, cmd["run_id"])
        assert done["status"] == "success", done
        assert target.read_bytes() == image.read_bytes()
