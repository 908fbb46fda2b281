"""The seeds' disk image rules through a real server, a real agent and a loop device.

Each test names the rule it proves; the slow and failing disks are real files behind FUSE
(``tests.sources.faultyfuse``): reads of one range fail with EIO, or hang until released.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.agent.conftest import Harness

pytestmark = pytest.mark.root  # loop devices, FUSE

MiB = 1 << 20


def _needs_fuse() -> None:
    if os.geteuid() != 0 or shutil.which("fusermount") is None or not os.path.exists("/dev/fuse"):
        pytest.skip("needs FUSE (root, /dev/fuse, fusermount)")
    pytest.importorskip("fuse")


def _random_disk(path: Path, size: int, seed: int = 3, data_mib: int = 8) -> None:
    """``size`` bytes, sparse; random data in the first and in scattered MiBs (no file system:
    the read plan is the whole device)."""
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for mib in [0, *rnd.sample(range(1, size // MiB), data_mib)]:
            f.seek(mib * MiB)
            f.write(rnd.randbytes(MiB))


def _image_job(harness: Harness, agent: Any, dev: str, **policy: Any) -> dict[str, Any]:
    return harness.files_job(agent, Path(dev), engine="disk_image", source_path="", disk_source_volume=dev,
                             disk_image_format="raw", name="image job", policy=policy)


def _event(harness: Harness, run_id: int, code: str) -> dict[str, Any]:
    found = [e for e in harness.events(run_id) if e["code"] == code]
    assert found, f"no {code} in {harness.codes(run_id)}"
    return found[0]


@contextmanager
def _held_loop(tmp_path: Path, size: int, hold_at: int) -> Iterator[tuple[str, Callable[[], None]]]:
    """A loop device over a FUSE file whose reads at ``hold_at`` hang until released."""
    from tests.sources.diskimages import loop_device
    from tests.sources.faultyfuse import held_image

    _needs_fuse()
    image = tmp_path / "slow.img"
    _random_disk(image, size)
    with held_image(image, hold_at, MiB) as (served, release), loop_device(served, ro=True) as dev:
        try:
            yield dev, release
        finally:
            release()


# -- AGENT_DISK_IMAGE_STRICT_READ_ERRORS: the fallback when the policy leaves strict unset ---------


def test_strict_read_errors_from_the_agents_environment_when_the_policy_is_unset(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.sources.diskimages import loop_device
    from tests.sources.faultyfuse import faulty_image

    _needs_fuse()
    image = tmp_path / "bad.img"
    _random_disk(image, 16 * MiB)
    monkeypatch.setenv("AGENT_DISK_IMAGE_STRICT_READ_ERRORS", "1")
    agent, _ = harness.make_agent()
    with faulty_image(image, [(9 * MiB, 4096)]) as served, loop_device(served, ro=True) as dev:
        job = _image_job(harness, agent, dev)  # the wizard's default: strict mode unset
        assert job["policy"]["disk_image_strict_read_errors"] is None
        run = harness.run_job(job["id"])
        assert agent.poll_once()
        r = harness.finish(agent, run)
        assert r["status"] == "failed", r
        failed = _event(harness, run, "DISK_IMAGE_FAILED")
        assert failed["details"]["offset"] <= 9 * MiB < failed["details"]["offset"] + failed["details"]["length"]
        assert "DISK_IMAGE_READ_RECOVERED" not in harness.codes(run)
        # a policy that says "best effort" wins over the variable
        harness.api("PATCH", f"/api/jobs/{job['id']}", json={"policy": {"disk_image_strict_read_errors": False}})
        run = harness.run_job(job["id"])
        assert agent.poll_once()
        r = harness.finish(agent, run)
        assert r["status"] == "warning", r
        recovered = _event(harness, run, "DISK_IMAGE_READ_RECOVERED")["details"]
        assert (recovered["offset"], recovered["length"]) == (9 * MiB, 4096)  # only the bad sectors


# -- disk_image_bitmap: unchecked means every byte of every partition is read ---------------------


def test_disk_image_bitmap_off_reads_the_whole_device(harness: Harness, tmp_path: Path) -> None:
    from tests.sources.diskimages import loop_device, make_ext, sample_files

    image = tmp_path / "disk.img"
    make_ext(image, 32 << 20, sample_files())
    agent, _ = harness.make_agent()
    with loop_device(image) as dev:
        used = _image_job(harness, agent, dev)
        whole = _image_job(harness, agent, dev, disk_image_bitmap=False)
        got = {}
        for job in (used, whole):
            run = harness.run_job(job["id"])
            assert agent.poll_once()
            assert harness.finish(agent, run)["status"] == "warning"  # read live: DISK_IMAGE_SNAPSHOT_NONE
            got[job["id"]] = _event(harness, run, "DISK_IMAGE_STREAM_START")["details"]
    assert got[used["id"]]["read_plan"] == "used" and got[used["id"]]["plan_bytes"] < 32 << 20
    assert got[whole["id"]]["read_plan"] == "full" and got[whole["id"]]["plan_bytes"] == 32 << 20


# -- volume forms: C:, C:\, \\?\Volume{...}\, /dev/... ---------------------------------------------


@pytest.mark.parametrize("volume", ["C:", "C:\\", "\\\\?\\Volume{0b6e3d4a-1c2d-4e5f-8a9b-0c1d2e3f4a5b}\\"])
def test_windows_volumes_are_valid_jobs_that_a_linux_agent_fails_naming_its_platform(
    harness: Harness, volume: str
) -> None:
    agent, _ = harness.make_agent()
    job = harness.files_job(agent, Path("/"), engine="disk_image", source_path="", disk_source_volume=volume)
    assert job["disk_source_volume"] == volume
    run = harness.run_job(job["id"])
    assert agent.poll_once()
    r = harness.finish(agent, run)
    assert r["status"] == "failed", r
    ev = _event(harness, run, "ENGINE_UNAVAILABLE")
    assert volume in ev["message"] and "Windows volume" in ev["message"] and "linux" in ev["message"]
    assert ev["details"]["platform"].startswith("linux")
    assert "RUN_REFUSED" not in harness.codes(run)


def test_a_volume_in_no_accepted_form_is_refused_by_the_server(harness: Harness) -> None:
    agent, _ = harness.make_agent()
    body = {"name": "bad", "engine": "disk_image", "agent_id": agent.config.agent_id, "source_path": "",
            "disk_source_volume": "/etc/passwd",
            "destination": {"type": "local", "path": str(harness.tmp / "repo"), "repository_password": "x" * 12}}
    harness.client.cookies.clear()
    r = harness.client.post("/api/jobs", json=body, headers=harness.admin_headers)
    assert r.status_code == 422 and "C:" in r.text and "/dev/sda" in r.text


# -- stall detection before the tail ---------------------------------------------------------------


@pytest.mark.parametrize("fail", [False, True])
def test_a_read_that_hangs_gives_disk_image_stalled_and_the_policy_decides(
    harness: Harness, tmp_path: Path, fail: bool
) -> None:
    """A 256 MiB disk whose reads at 32 MiB hang (the tail, where stalls are suppressed, is the last
    128 MiB): after the policy's 1 s, DISK_IMAGE_STALLED; released, the run completes -- or, with
    ``disk_image_fail_on_stall``, it fails."""
    agent, _ = harness.make_agent()
    with _held_loop(tmp_path, 256 * MiB, 32 * MiB) as (dev, release):
        job = _image_job(harness, agent, dev, disk_image_stall_seconds=1, disk_image_fail_on_stall=fail)
        run = harness.run_job(job["id"])
        agent.start()
        harness.wait_for(lambda: "DISK_IMAGE_STALLED" in harness.codes(run), timeout=60, message="stall event")
        if not fail:
            release()  # the disk comes back: the run goes on
        # failing by policy does not wait for the disk: the read still hangs here
        harness.wait_for(lambda: harness.run(run)["status"] not in ("queued", "running"), timeout=60,
                         message="the run ended")
        r = harness.run(run)
        stalled = _event(harness, run, "DISK_IMAGE_STALLED")
        assert stalled["details"]["bytes_done"] < 128 * MiB and stalled["details"]["stall_seconds"] == 1
        assert stalled["details"]["fail_on_stall"] is fail
        if fail:
            assert r["status"] == "failed" and "no progress" in r["error_summary"], r
            assert "DISK_IMAGE_FAILED" in harness.codes(run)
        else:
            assert r["status"] == "warning", r
            assert harness.codes(run)[-1] == "DISK_IMAGE_STREAM_COMPLETED"


# -- parallel_disk_reads: the server's range is the engine's ----------------------------------------


def test_parallel_disk_reads_above_32_are_used_as_given(harness: Harness, tmp_path: Path) -> None:
    from tests.sources.diskimages import loop_device

    image = tmp_path / "wide.img"
    _random_disk(image, 256 * MiB)
    agent, _ = harness.make_agent()
    with loop_device(image, ro=True) as dev:
        # a budget that holds 48 readers' chunks (the default one caps them and says so:
        # tests/engines/disk_image/test_units.py)
        job = _image_job(harness, agent, dev, parallel_disk_reads=48, max_memory_mb=1024)
        run = harness.run_job(job["id"])
        assert agent.poll_once()
        assert harness.finish(agent, run)["status"] == "warning"  # read live: DISK_IMAGE_SNAPSHOT_NONE
        start = _event(harness, run, "DISK_IMAGE_STREAM_START")["details"]
        assert (start["readers"], start["parallel_disk_reads"]) == (48, 48)


# -- REPOSITORY_* events and the restore's workers from the policy ----------------------------------


def test_image_runs_emit_repository_events_and_restore_with_the_policys_workers(
    harness: Harness, tmp_path: Path
) -> None:
    from tests.sources.diskimages import loop_device

    image = tmp_path / "disk.img"
    _random_disk(image, 24 * MiB)
    agent, _ = harness.make_agent()
    with loop_device(image, ro=True) as dev:
        job = _image_job(harness, agent, dev, restore_parallel_workers=3, restore_segment_size_mb=8)
        run = harness.run_job(job["id"])
        assert agent.poll_once()
        r = harness.finish(agent, run)
        assert r["status"] == "warning", r
    codes = harness.codes(run)
    order = ["DISK_IMAGE_STREAM_START", "REPOSITORY_SNAPSHOT_STARTED", "REPOSITORY_INDEX_WRITTEN",
             "REPOSITORY_SNAPSHOT_SAVED", "DISK_IMAGE_STREAM_COMPLETED"]
    assert [c for c in codes if c in order] == order, codes
    saved = _event(harness, run, "REPOSITORY_SNAPSHOT_SAVED")["details"]
    assert saved["snapshot_id"] == r["snapshot_id"]
    assert _event(harness, run, "REPOSITORY_INDEX_WRITTEN")["details"]["packs"] >= 1
    target = harness.tmp / "restores" / "disk.raw"
    cmd = harness.command(agent, "restore", job["id"], snapshot_id=r["snapshot_id"], target_path=str(target))
    assert agent.commands.poll_once() == 1
    assert harness.finish(agent, cmd["run_id"])["status"] == "success"
    assert target.read_bytes() == image.read_bytes()
    result = harness.api("GET", f"/api/commands/{cmd['id']}").json()["result"]
    assert (result["workers"], result["segment_size"]) == (3, 8 * MiB)
    # the same restore again: the target exists, and the error names the request's field, not a flag
    cmd = harness.command(agent, "restore", job["id"], snapshot_id=r["snapshot_id"], target_path=str(target))
    assert agent.commands.poll_once() == 1
    again = harness.finish(agent, cmd["run_id"])
    assert again["status"] == "failed" and "force: true in the restore request" in again["error_summary"], again
    assert "--" not in again["error_summary"]


# -- cancel: image backup and image restore end CANCELLED with RUN_CANCELLED -----------------------


def test_cancel_stops_an_image_backup(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    with _held_loop(tmp_path, 64 * MiB, 40 * MiB) as (dev, _release):  # released on exit
        job = _image_job(harness, agent, dev)
        run = harness.run_job(job["id"])
        agent.start()
        harness.wait_for(lambda: "DISK_IMAGE_STREAM_START" in harness.codes(run), timeout=60, message="started")
        harness.api("POST", f"/api/runs/{run}/cancel")
        # the read still hangs: a cancel does not wait for it (the reader thread is left to it)
        harness.wait_for(lambda: harness.run(run)["status"] == "cancelled", timeout=60, message="cancelled")
    r = harness.run(run)
    assert r["snapshot_id"] is None
    assert "RUN_CANCELLED" in harness.codes(run) and "DISK_IMAGE_STREAM_COMPLETED" not in harness.codes(run)


def test_cancel_stops_an_image_restore(harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The restore's workers wait (once started) until the run is cancelled: it must end
    CANCELLED with RUN_CANCELLED, the partial file removed -- not FAILED."""
    from e3backup.restore.image import restorer
    from tests.sources.diskimages import loop_device

    image = tmp_path / "disk.img"
    _random_disk(image, 24 * MiB)
    agent, _ = harness.make_agent()
    with loop_device(image, ro=True) as dev:
        job = _image_job(harness, agent, dev)
        run = harness.run_job(job["id"])
        assert agent.poll_once()
        r = harness.finish(agent, run)
    started: list[bool] = []
    real = restorer.ImageRestorer._restore_segment

    def waits_for_cancel(self: restorer.ImageRestorer, worker: Any, seg: Any) -> None:
        started.append(True)
        assert self.stops.cancel.wait(60)  # a slow restore, stopped by the dashboard
        real(self, worker, seg)

    monkeypatch.setattr(restorer.ImageRestorer, "_restore_segment", waits_for_cancel)
    target = harness.tmp / "restores" / "disk.raw"
    cmd = harness.command(agent, "restore", job["id"], snapshot_id=r["snapshot_id"], target_path=str(target))
    agent.start()
    harness.wait_for(lambda: started, timeout=60, message="restore started")
    harness.api("POST", f"/api/runs/{cmd['run_id']}/cancel")
    harness.wait_for(lambda: harness.run(cmd["run_id"])["status"] == "cancelled", timeout=60, message="cancelled")
    codes = harness.codes(cmd["run_id"])
    assert "RUN_CANCELLED" in codes
    ev = _event(harness, cmd["run_id"], "RUN_CANCELLED")
    assert "partial target was removed" in ev["message"]
    assert not target.exists()


def test_files_runs_emit_the_same_repository_events(harness: Harness, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(random.Random(1).randbytes(100_000))
    agent, _ = harness.make_agent()
    job = harness.files_job(agent, src)
    run = harness.run_job(job["id"])
    assert agent.poll_once()
    assert harness.finish(agent, run)["status"] == "success"
    order = ["REPOSITORY_SNAPSHOT_STARTED", "REPOSITORY_INDEX_WRITTEN", "REPOSITORY_SNAPSHOT_SAVED"]
    assert [c for c in harness.codes(run) if c in order] == order
