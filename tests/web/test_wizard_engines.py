"""The wizard offers only the engines the chosen agent runs, and the disk refresh gives up after
3 attempts in all, in real Chromium against the live server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from e3backup.server.db.models import Tenant
from e3backup.server.services import users
from tests.server.conftest import PASSWORD
from tests.web.browser import LiveServer, sign_in

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect


@pytest.fixture
def ctx(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    yield context
    context.close()


def _enroll(live: LiveServer, tenant: str, host: str, **report: Any) -> int:
    state = live.app.state.e3
    with state.sessions() as s:
        token = users.rotate_enrollment_token(s.get(Tenant, live.tenants[tenant]))
        s.commit()
    r = httpx.post(f"{live.url}/api/agent/enroll", json={
        "enrollment_token": token, "hostname": host, "os": "windows", **report})
    assert r.status_code == 201, r.text
    return int(r.json()["agent_id"])


def test_the_wizard_offers_only_what_the_agent_runs(ctx: Any, live_server: LiveServer) -> None:
    win = _enroll(live_server, "Globex", "gx-win", engines=["files"], platform="win32")
    page = ctx.new_page()
    sign_in(page, live_server.url, "bob@globex.example", f"/jobs/new?agent_id={win}")
    disk = page.get_by_label("Disk Image", exact=True)
    expect(disk).to_be_disabled()
    expect(page.get_by_label("Sync", exact=True)).to_be_disabled()
    expect(page.get_by_label("Files", exact=True)).to_be_checked()
    expect(page.locator("#engine-disk_image-unavailable")).to_have_text("Not available on this agent (win32).")
    # an agent that never reported its engines is offered them all
    page.get_by_label("Agent (machine)", exact=True).select_option(label="gx-srv (linux)")
    expect(disk).to_be_enabled()
    expect(page.locator("#engine-disk_image-unavailable")).to_be_hidden()
    disk.check()
    page.get_by_label("Agent (machine)", exact=True).select_option(label="gx-win (windows)")
    expect(disk).to_be_disabled()
    expect(page.get_by_label("Files", exact=True)).to_be_checked()  # the choice moved to what it runs
    expect(page.get_by_label("Folders or files", exact=True)).to_be_visible()


def test_the_api_refuses_a_job_the_agent_cannot_run(live_server: LiveServer) -> None:
    win = _enroll(live_server, "Globex", "gx-win-2", engines=["files"], platform="win32")
    with httpx.Client(base_url=live_server.url) as c:
        login = c.post("/api/auth/login", json={"email": "bob@globex.example", "password": PASSWORD})
        assert login.status_code == 200, login.text
        headers = {"X-CSRF-Token": login.json()["csrf_token"]}
        body = {"name": "image", "engine": "disk_image", "agent_id": win, "disk_source_volume": "C:",
                "destination": {"type": "local", "path": "/srv/repo", "repository_password": "a long password"}}
        r = c.post("/api/jobs", json=body, headers=headers)
        assert r.status_code == 422, r.text
        assert "gx-win-2 (win32) cannot run disk_image jobs; it runs files" in r.text
        r = c.post("/api/jobs", json={**body, "engine": "files", "source_paths": ["C:\\Users"],
                                      "disk_source_volume": None}, headers=headers)
        assert r.status_code == 201, r.text


def test_the_disk_refresh_makes_three_attempts_in_all(ctx: Any, live_server: LiveServer) -> None:
    page = ctx.new_page()
    sign_in(page, live_server.url, "bob@globex.example", "/jobs/new")
    page.get_by_label("Agent (machine)", exact=True).select_option(label="gx-srv (linux)")
    page.get_by_label("Disk Image", exact=True).check()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/disks/refresh" in r.url else None)
    page.get_by_role("button", name="Refresh").click()  # gx-srv never answers
    expect(page.locator("#disks-status")).to_contain_text("did not answer after 3 attempts", timeout=30_000)
    assert len(asked) == 3
    assert "command_id=" not in asked[0] and all("command_id=" in u for u in asked[1:])
