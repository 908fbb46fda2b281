"""Proof of restore in the dashboard, in real Chromium: per job the last proof (verdict, time,
the screenshot's thumbnail that opens full size, served with the user's session; other tenants
get 404, tests/server/test_proofs.py), the failed proof's reason, each restore point's verdict,
the wizard's offer; and the whole boot proof through a real agent (slow)."""

from __future__ import annotations

import base64
import os
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e3backup.agent.client import ServerClient
from e3backup.agent.config import AgentConfig
from e3backup.agent.disks import LsblkInventory
from e3backup.agent.runner import Agent
from e3backup.agent.transport import HttpxTransport
from tests.agent.conftest import RECORDINGS
from tests.conftest import FAST_KDF
from tests.plugins.bootdisk import BootDisk
from tests.png import text_bands
from tests.server.conftest import PASSWORD
from tests.sources.diskimages import loop_device
from tests.web.browser import LiveServer, shot, sign_in
from tests.web.test_console_browser import _job

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

LAPTOP = {"width": 1280, "height": 800}


def backup_with_proof(live: LiveServer, job_id: int, snapshot: str, verdict: str, reason: str = "",
                      png: bytes | None = None) -> tuple[int, dict[str, Any]]:
    """A backup run of gx-srv's job, then its proof, both through the agent API."""
    from e3backup.server.db.models import Job
    from e3backup.server.services import runs

    state = live.app.state.e3
    with state.sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        run = runs.create_run(s, job, state.clock.now(), "manual")
        s.commit()
        run_id = run.id
    assert live.agent_call("gx-srv", "next_run")["run"]["run_id"] == run_id
    live.agent_call("gx-srv", "update_run", {"run_id": run_id, "status": "success", "snapshot_id": snapshot})
    body: dict[str, Any] = {
        "run_id": run_id, "snapshot_id": snapshot, "kind": "boot" if png else "fsck", "verdict": verdict,
        "reason": reason, "started_at": "2026-12-03T18:00:00Z", "finished_at": "2026-12-03T18:02:00Z",
        "checks": [{"name": "boot", "ok": verdict == "passed", "detail": reason or "marker seen"}],
    }
    if png is not None:
        body["screenshot_png"] = base64.b64encode(png).decode()
    return run_id, live.agent_call("gx-srv", "report_proof", body)


def guest_screen(width: int = 720, height: int = 400) -> bytes:
    """A real PNG of a guest-sized screen: grey text-like stripes on black (the boot test below
    takes a real guest's screen)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + (b"\xaa\xaa\xaa" if 160 <= y < 176 else b"\0\0\0") * width for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_jobs_show_the_last_proof_with_a_thumbnail_opening_full_size(browser: Any, live_server: LiveServer) -> None:
    live = live_server
    png = guest_screen()
    width = struct.unpack(">I", png[16:20])[0]
    job_id = _job(live, "Globex proven")
    _, proof = backup_with_proof(live, job_id, "aa" * 32, "passed", png=png)
    assert proof["screenshot_url"] == f"/api/proofs/{proof['id']}/screenshot.png"
    ctx = browser.new_context(viewport=LAPTOP)
    ctx.set_default_timeout(15_000)
    try:
        page = ctx.new_page()
        sign_in(page, live.url, "bob@globex.example", "/jobs")
        row = page.locator("#jobs tbody tr", has_text="Globex proven")
        expect(row).to_contain_text("Proof passed")
        expect(row).to_contain_text("booted")
        thumb = row.locator("a.proof-shot img")
        expect(thumb).to_be_visible()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
        assert thumb.evaluate("img => img.naturalWidth") == width
        assert thumb.evaluate("img => img.getBoundingClientRect().width") == 160  # a thumbnail
        shot(page, "proof-jobs")
        with ctx.expect_page() as opened:
            thumb.click()
        full = opened.value
        full.wait_for_load_state()
        assert full.url == f"{live.url}{proof['screenshot_url']}"
        assert full.locator("img").evaluate("img => img.naturalWidth") == width

        page.goto(f"{live.url}/jobs/{job_id}")
        expect(page.locator("#proof")).to_contain_text("Proof passed")

        backup_with_proof(live, job_id, "bb" * 32, "failed",
                          "partition 1 (ext4): e2fsck -f -n exit code 4: inode 12 has bad blocks")
        page.goto(f"{live.url}/jobs")
        row = page.locator("#jobs tbody tr", has_text="Globex proven")
        expect(row).to_contain_text("Proof failed")
        expect(row).to_contain_text("e2fsck -f -n exit code 4")
        page.goto(f"{live.url}/restore-points?job_id={job_id}")
        expect(page.locator(f"#restore-points tr[data-snapshot='{'aa' * 32}']")).to_contain_text("Proof passed")
        expect(page.locator(f"#restore-points tr[data-snapshot='{'bb' * 32}']")).to_contain_text("Proof failed")
        shot(page, "proof-restore-points")
    finally:
        ctx.close()


def test_the_wizard_offers_proof_of_restore_only_where_it_can_run(browser: Any, live_server: LiveServer) -> None:
    live = live_server
    ctx = browser.new_context(viewport=LAPTOP)
    ctx.set_default_timeout(15_000)
    try:
        page = ctx.new_page()
        sign_in(page, live.url, "admin@msp.example", "/jobs/new")
        proof = page.get_by_label("Proof of restore")
        for host, engine, offered in (("gx-srv", "files", True), ("gx-srv", "sync", False),
                                      ("acme-pc", "files", True), ("acme-pc", "disk_image", False)):
            page.locator("#agent_id").select_option(label=page.locator("#agent_id option", has_text=host)
                                                    .first.inner_text())
            page.locator(f"input[name='engine'][value='{engine}']").check()
            if offered:
                expect(proof).to_be_visible()
                expect(proof).to_be_enabled()
            else:
                expect(proof).to_be_hidden()  # hidden and disabled: never submitted
                expect(proof).to_be_disabled()
    finally:
        ctx.close()


BOOT_USER = "ops@bootco.example"


@pytest.fixture
def boot_agent(live_server: LiveServer, tmp_path: Path) -> Iterator[Agent]:
    """Tenant Bootco with a user and a real Linux agent talking HTTP to the live server."""
    from e3backup.server.services import users

    state = live_server.app.state.e3
    with state.sessions() as s:
        tenant = users.create_tenant(s, "Bootco", state.clock.now())
        users.create_user(s, state.passwords, state.clock.now(), BOOT_USER, PASSWORD, False, tenant.id)
        token = users.rotate_enrollment_token(tenant)
        s.commit()
    transport = HttpxTransport.network(live_server.url)
    answer = ServerClient(transport).enroll(token, "boot-host", "linux")
    config = AgentConfig(server_url=live_server.url, agent_id=answer.agent_id, agent_token=answer.agent_token,
                         state_dir=str(tmp_path / "agent"), poll_interval_seconds=0.1, command_interval_seconds=0.1,
                         progress_interval_seconds=0.2, local_destination_roots=[str(live_server.data / "repos")])
    lsblk = (RECORDINGS / "lsblk.json").read_text()
    agent = Agent(config, transport, kdf=FAST_KDF, client_backoff=0.0, delivery_retry=0.05,
                  inventory=LsblkInventory(lambda: lsblk), snapshot_cleanup=lambda: [])
    agent.start()
    try:
        yield agent
    finally:
        agent.stop(timeout=30)


@pytest.mark.slow
def test_the_agent_boots_the_backup_and_the_dashboard_shows_its_screen(
    browser: Any, live_server: LiveServer, boot_agent: Agent, boot_disk: BootDisk, tmp_path: Path
) -> None:
    """The whole proof: a disk_image job of the bootable test disk with verify_boot; the agent
    backs it up, boots the snapshot, sees the marker, takes the screen; the dashboard shows it."""
    from e3backup.proof.boot import boot_unavailable
    from e3backup.server.db.models import Proof, User
    from e3backup.server.schemas import JobCreate
    from e3backup.server.services import jobs, runs

    if boot_unavailable() or os.geteuid() != 0:
        pytest.skip(boot_unavailable() or "loop devices need root")
    live, state = live_server, live_server.app.state.e3
    disk = boot_disk.copy_to(tmp_path / "boot.img")
    with loop_device(disk, ro=True) as dev:
        with state.sessions() as s:
            user = s.query(User).filter(User.email == BOOT_USER).one()
            spec = JobCreate.model_validate({
                "name": "Boot server", "engine": "disk_image", "agent_id": boot_agent.config.agent_id,
                "disk_source_volume": dev, "disk_image_format": "raw",
                "destination": {"type": "local", "path": str(live.data / "repos" / "bootco"),
                                "repository_password": "repo-PASSWORD-bootco"},
                "policy": {"verify_boot": "daily", "verify_boot_marker": boot_disk.marker},
            })
            job = jobs.save_job(s, state.box, user, spec, state.clock.now())
            run = runs.create_run(s, job, state.clock.now(), "manual")
            s.commit()
            job_id, run_id = job.id, run.id

        def proven() -> Proof | None:
            with state.sessions() as s:
                return s.query(Proof).filter(Proof.job_id == job_id).one_or_none()

        deadline = time.monotonic() + 240
        while (proof := proven()) is None:  # a bounded wait for the agent's report
            assert time.monotonic() < deadline, "no proof reported"
            time.sleep(0.2)
    boot = next(c for c in proof.checks if c["name"] == "boot")
    assert (proof.kind, proof.verdict, proof.run_id) == ("boot", "passed", run_id), boot
    assert boot["detail"].startswith(f"the serial console showed {boot_disk.marker!r} after"), boot
    ctx = browser.new_context(viewport=LAPTOP)
    ctx.set_default_timeout(15_000)
    try:
        page = ctx.new_page()
        sign_in(page, live.url, BOOT_USER, f"/jobs/{job_id}")
        expect(page.locator("#proof")).to_contain_text("Proof passed")
        expect(page.locator("#proof")).to_contain_text("booted")
        thumb = page.locator("#proof a.proof-shot img")
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
        shot(page, "proof-job-booted")
        png = page.request.get(f"{live.url}/api/proofs/{proof.id}/screenshot.png").body()
        assert png == proof.screenshot
        # the guest's init cleared the screen and printed the marker (16 characters) and, two lines
        # below, "booted from an e3backup snapshot" (32): two lines of text, the first half as wide
        first, second = text_bands(png)
        assert second[0] > first[1]
        assert 0.45 < (first[3] - first[2] + 1) / (second[3] - second[2] + 1) < 0.55, (first, second)
        assert thumb.evaluate("img => img.naturalWidth") == struct.unpack(">I", png[16:20])[0]
    finally:
        ctx.close()
