"""Proof of restore in the dashboard, in real Chromium: per job the last proof (verdict, time,
the screenshot's thumbnail that opens full size, served with the user's session and only to its
tenant), the failed proof's reason, and each restore point's verdict."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

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


def guest_screen(browser: Any) -> bytes:
    """A PNG standing for a guest's 720x400 text screen (the boot test takes the real one)."""
    ctx = browser.new_context(viewport={"width": 720, "height": 400})
    try:
        page = ctx.new_page()
        page.set_content("<body style='background:#000;color:#aaa;font:16px monospace'>"
                         "<pre>Booting the backup...\nE3BACKUP-PROOF-MARKER\n~ # </pre></body>")
        return bytes(page.screenshot())
    finally:
        ctx.close()


def test_jobs_show_the_last_proof_with_a_thumbnail_opening_full_size(browser: Any, live_server: LiveServer) -> None:
    live = live_server
    png = guest_screen(browser)
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
    other = browser.new_context(viewport=LAPTOP)
    try:
        page = other.new_page()
        sign_in(page, live.url, "peter@initech.example", "/jobs")
        assert page.goto(f"{live.url}{proof['screenshot_url']}").status == 404  # another tenant's screen
    finally:
        other.close()


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
