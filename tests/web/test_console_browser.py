"""The MSP console in real Chromium (#25): a failed run raises an email (received by a real SMTP
server) and a signed webhook (received by a local HTTP server) and the overview shows its machine
first; edit, disable, cancel, pause and delete through the UI; paging through 500 runs; the
tenant switcher's arrow keys; focus on the error summary; browser-local times; screenshots of
every console page at 1280 and 390 pixels wide."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest

from e3backup.server.services.alert_delivery import MailSettings, verify
from tests.plugins.alert_receivers import Inbox, WebhookReceiver, smtp_inbox, webhook_receiver  # noqa: F401
from tests.web.browser import LiveServer, shot, sign_in

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
HOOK_SECRET = "whsec-browser-journey-0123456789"


def _job(live: LiveServer, name: str, host: str = "gx-srv") -> int:
    """A files job of ``host`` made through the jobs service (the wizard has its own tests)."""
    from e3backup.server.db.models import Agent, User
    from e3backup.server.schemas import JobCreate
    from e3backup.server.services import jobs

    state = live.app.state.e3
    with state.sessions() as s:
        agent = s.query(Agent).filter(Agent.hostname == host).one()
        admin = s.query(User).filter(User.role == "msp_admin").first()
        spec = JobCreate.model_validate({
            "name": name, "engine": "files", "agent_id": agent.id, "source_path": "/srv/data",
            "destination": {"type": "s3", "endpoint": "https://s3.example.net", "bucket": "globex-backups",
                            "access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3-SECRET-journey",
                            "repository_password": "repo-PASSWORD-journey"},
        })
        job = jobs.save_job(s, state.box, admin, spec, state.clock.now())
        s.commit()
        return job.id


def test_failed_run_alerts_and_the_overview_shows_it_first(
    browser: Any, live_server: LiveServer, smtp_inbox: Inbox, webhook_receiver: WebhookReceiver,  # noqa: F811
) -> None:
    live = live_server
    worker = live.app.state.alerts
    worker.mail = MailSettings(smtp_inbox.host, smtp_inbox.port, "alerts@msp.example")
    ctx = browser.new_context(viewport=LAPTOP, timezone_id="Europe/Berlin")
    ctx.set_default_timeout(15_000)
    try:
        page = ctx.new_page()
        sign_in(page, live.url, "admin@msp.example", "/alerts")
        page.get_by_label("Email address or webhook URL").fill("oncall@msp.example")
        page.get_by_role("button", name=re.compile("Add recipient")).click()
        expect(page.locator("#channels")).to_contain_text("oncall@msp.example")
        page.get_by_label("Send by").select_option("webhook")
        page.get_by_label("Email address or webhook URL").fill(webhook_receiver.url)
        page.get_by_label(re.compile("Webhook signing secret")).fill(HOOK_SECRET)
        page.get_by_role("button", name=re.compile("Add recipient")).click()
        expect(page.locator("#channels")).to_contain_text(webhook_receiver.url)
        assert HOOK_SECRET not in page.content()

        job_id = _job(live, "Globex files")
        page.goto(f"{live.url}/jobs/{job_id}")
        page.get_by_role("button", name="Run now").click()
        run_id = int(page.url.rsplit("/", 1)[1])
        assert live.agent_call("gx-srv", "next_run")["run"]["run_id"] == run_id
        live.agent_call("gx-srv", "update_run", {"run_id": run_id, "status": "failed",
                                                  "error_summary": "disk full on the backup target"})
        assert worker.deliver_due() == 2
        (rcpts, mail), = smtp_inbox.messages
        assert rcpts == ["oncall@msp.example"] and "Globex files failed: disk full" in mail["Subject"]
        (hook,) = webhook_receiver.calls
        assert verify(HOOK_SECRET, hook.headers["x-e3backup-signature"], hook.body)
        assert json.loads(hook.body)["details"]["run_id"] == run_id

        live.agent_call("gx-srv", "next_run")  # the machine is online: the failure alone ranks it
        page.goto(f"{live.url}/")
        first = page.locator("#fleet tbody tr").first
        expect(first).to_contain_text("gx-srv")
        expect(first).to_contain_text("last run failed")
        expect(page.locator("#stat-failed")).to_contain_text("1 failed runs in 24 h")
        page.goto(f"{live.url}/alerts")
        expect(page.locator("#incidents")).to_contain_text("disk full on the backup target")
        shot(page, "console-alerts-incident")
    finally:
        ctx.close()


def test_edit_disable_pause_cancel_and_delete_through_the_ui(browser: Any, live_server: LiveServer) -> None:
    live = live_server
    ctx = browser.new_context(viewport=LAPTOP)
    ctx.set_default_timeout(15_000)
    try:
        page = ctx.new_page()
        job_id = _job(live, "Journey job")
        sign_in(page, live.url, "bob@globex.example", f"/jobs/{job_id}")
        page.get_by_role("link", name="Edit", exact=True).click()
        page.get_by_label("Job name").fill("Journey job (edited)")
        page.get_by_label("Schedule", exact=True).select_option("daily")
        page.get_by_label("At (HH:MM, daily and weekly)").fill("21:15")
        page.get_by_role("button", name="Save changes").click()
        expect(page.get_by_role("status")).to_contain_text("Changes saved")
        expect(page.get_by_role("heading", level=1)).to_contain_text("Journey job (edited)")
        expect(page.locator("#next-runs time")).to_have_count(3)
        page.get_by_role("button", name="Disable").click()
        expect(page.get_by_role("status")).to_contain_text("Job disabled")
        expect(page.locator("#next-runs")).to_have_text("—")
        page.get_by_role("button", name="Enable").click()

        page.get_by_role("button", name="Run now").click()
        expect(page.get_by_role("button", name="Cancel this run")).to_be_visible()
        page.get_by_role("button", name="Cancel this run").click()
        expect(page.locator("h1 .status")).to_have_text("Cancelled")

        gx = page.url  # pause the machine: Run now is refused
        page.goto(f"{live.url}/agents")
        page.get_by_role("link", name="gx-srv").first.click()
        page.get_by_role("button", name="Pause (no new runs)").click()
        expect(page.locator("h1")).to_contain_text("Paused")
        page.goto(f"{live.url}/jobs/{job_id}")
        page.get_by_role("button", name="Run now").click()
        expect(page.get_by_role("alert")).to_contain_text("agent is paused")
        page.goto(gx.rsplit("/runs", 1)[0] + "/agents")
        page.get_by_role("link", name="gx-srv").first.click()
        page.get_by_role("button", name="Resume").click()
        expect(page.locator("h1")).not_to_contain_text("Paused")

        page.goto(f"{live.url}/jobs/{job_id}")
        page.get_by_label(re.compile("To delete, type the job's name")).fill("Journey job (edited)")
        page.get_by_role("button", name="Delete job").click()
        expect(page).to_have_url(re.compile(r"/jobs\?notice=deleted$"))
        expect(page.locator("main")).not_to_contain_text("Journey job (edited)")
    finally:
        ctx.close()


def test_paging_500_runs_keys_focus_local_time_and_screenshots(browser: Any, live_server: LiveServer) -> None:
    from e3backup.server.db.models import Run

    live = live_server
    job_id = _job(live, "Busy job", host="acme-pc")
    state = live.app.state.e3
    start = state.clock.now() - timedelta(days=3)
    with state.sessions() as s:
        s.add_all(Run(tenant_id=live.tenants["Acme"], job_id=job_id, agent_id=1, kind="backup", trigger="schedule",
                      status="success", created_at=start + timedelta(minutes=5 * i),
                      started_at=start + timedelta(minutes=5 * i), finished_at=start + timedelta(minutes=5 * i + 2))
                  for i in range(500))
        s.commit()
    ctx = browser.new_context(viewport=LAPTOP, timezone_id="Asia/Tokyo")
    ctx.set_default_timeout(15_000)
    try:
        page = ctx.new_page()
        sign_in(page, live.url, "alice@acme.example", f"/runs?job_id={job_id}")
        expect(page.locator("#run-count")).to_contain_text("500 runs")
        pages = 1
        while page.get_by_role("link", name="Older").count():
            page.get_by_role("link", name="Older").click()
            pages += 1  # the next page has loaded before the link is looked for again
            expect(page.locator("#run-count")).to_contain_text(f"{(pages - 1) * 50 + 1}\u2013{pages * 50} shown")
        expect(page.locator("#run-count")).to_contain_text("451\u2013500 shown")
        assert pages == 10
        stamp = page.locator("td time").first
        assert "UTC" in (stamp.get_attribute("title") or "") and "UTC" not in stamp.inner_text()
        assert "GMT+9" in stamp.inner_text() or "JST" in stamp.inner_text()

        page.goto(f"{live.url}/jobs/new")  # an empty submit: the focus lands on the summary
        page.get_by_role("button", name="Create job").click()
        expect(page.locator("#form-errors")).to_be_focused()
        expect(page.locator("#form-errors")).to_contain_text("Job name: Required.")
        page.get_by_role("button", name="Sign out").click()

        sign_in(page, live.url, "admin@msp.example", "/runs")
        page.evaluate("window.__still_here = true")
        switcher = page.get_by_label("Tenant", exact=True)
        switcher.focus()
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        assert page.evaluate("window.__still_here === true")  # no reload per key press
        page.keyboard.press("Enter")
        page.wait_for_function("window.__still_here === undefined")
        expect(switcher).not_to_have_value("")
        page.get_by_label("Tenant", exact=True).select_option("")

        agent = 1
        urls = {"overview": "/", "agents": "/agents", "agent": f"/agents/{agent}", "jobs": "/jobs",
                "job": f"/jobs/{job_id}", "job-edit": f"/jobs/{job_id}/edit", "job-new": "/jobs/new",
                "runs": "/runs", "run": page.locator("a[href^='/runs/']").first.get_attribute("href") or "/runs",
                "events": "/events", "alerts": "/alerts", "destinations": "/destinations",
                "audit": "/audit"}
        for width, viewport in (("1280", LAPTOP), ("390", PHONE)):
            page.set_viewport_size(viewport)
            for name, url in urls.items():
                page.goto(f"{live.url}{url}")
                if width == "390":
                    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 0, f"{url}: {overflow} px of horizontal scroll"
                shot(page, f"console-{name}-{width}")
    finally:
        ctx.close()
