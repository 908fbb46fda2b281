"""The whole recovery in real Chromium: the dashboard issues the code, the console's web UI (the
real ``e3backup recovery`` process) restores onto a loop device, the disk is judged, and the
dashboard shows the run successful with its events."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.recovery.conftest import DISK_SIZE, USER, Site, assert_restored, console_process, target_disk
from tests.web.browser import shot, sign_in, unlabelled_controls

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

DONE = "Restore complete: remove the rescue media and reboot."


@pytest.mark.slow
def test_recover_a_machine_from_the_dashboard_through_the_console_web_ui(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    violations: list[str] = []
    context.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    dash = context.new_page()
    sign_in(dash, site.url, USER, f"/jobs/{site.job_id}")
    dash.get_by_role("link", name="Recover this machine").click()
    expect(dash.get_by_role("heading", name="Recover this machine")).to_be_visible()
    dash.get_by_label("Restore point").select_option(site.snapshot_id)
    dash.get_by_role("button", name="Get a recovery code").click()
    code = dash.locator("#recovery-code").inner_text()
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", code)
    expect(dash.get_by_text(f"--code {code} --target /dev/sdX --yes", exact=False)).to_be_visible()
    shot(dash, "recovery-01-code")

    with target_disk(tmp_path, DISK_SIZE, partitioned=True) as dev, console_process(site) as (url, _proc):
        name = Path(dev).name
        con = context.new_page()
        con.goto(url)
        assert unlabelled_controls(con) == []
        con.get_by_label("Recovery code").fill(code.lower().replace("-", " "))
        con.get_by_role("button", name="Sign in").click()
        expect(con.get_by_role("heading", name="Restore acme-pc")).to_be_visible()
        expect(con.get_by_role("cell", name="root")).to_be_visible()
        shot(con, "recovery-02-console-disks")
        con.locator(f"#disk-{name}").check()
        con.get_by_role("button", name="Continue").click()
        expect(con.get_by_role("alert")).to_contain_text("GPT partition table with partitions 1:")
        con.get_by_label(f"Type {name} to confirm").fill("sda")
        con.get_by_role("button", name=f"Restore to {name}").click()
        expect(con.get_by_role("alert").last).to_contain_text(f"type the disk's name ({name})")
        con.get_by_label(f"Type {name} to confirm").fill(name)
        con.get_by_role("button", name=f"Restore to {name}").click()
        expect(con.locator('[data-field="message"]')).to_have_text(DONE, timeout=90_000)
        expect(con.locator("#events")).to_contain_text("RECOVERY_COMPLETED")
        expect(con.locator('[data-field="pending"]')).to_have_text("0")
        shot(con, "recovery-03-console-done")
        assert_restored(dev, site)

    dash.goto(f"{site.url}/agents/{site.agent_id}")
    dash.locator("#recoveries").get_by_role("link").first.click()
    expect(dash.locator('[data-field="status_label"]').first).to_have_text("Success")
    events = dash.locator("#events")
    for code_ in ("REPOSITORY_OPENED", "RECOVERY_STARTED", "RECOVERY_COMPLETED"):
        expect(events).to_contain_text(code_)
    shot(dash, "recovery-04-dashboard-run")
    context.close()
    assert violations == []
