"""The dashboard in real Chromium: sign-in, empty states, the job wizard, a run watched live while
the test plays the agent, the history chart, restore, tenant isolation and phone width.

The tests share one server and one browser and build on each other in file order (the jobs the
wizard creates are the ones whose runs are watched). Screenshots: test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.web.browser import DISKS, LiveServer, shot, sign_in, unlabelled_controls

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SNAPSHOT = "5f" * 32
SNAPSHOT_2 = "6a" * 32


@pytest.fixture
def ctx(browser: Any) -> Any:
    """A browser context; every test fails if the page broke the Content-Security-Policy (the
    server sends one that allows no inline script or style)."""
    context = browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(15_000)
    violations: list[str] = []
    context.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    yield context
    context.close()
    assert violations == []


def _event(seq: int, code: str, message: str = "", **details: Any) -> dict[str, Any]:
    return {"seq": seq, "code": code, "message": message, "ts": datetime.now(UTC).isoformat(), "details": details}


def test_login_form_then_empty_states_with_the_enroll_command(ctx: Any, live_server: LiveServer) -> None:
    page = ctx.new_page()
    page.goto(f"{live_server.url}/jobs")
    expect(page).to_have_url(re.compile(r"/login\?next=/jobs$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert unlabelled_controls(page) == []
    shot(page, "01-login")
    sign_in(page, live_server.url, "peter@initech.example")
    expect(page.get_by_role("heading", name="No agents yet")).to_be_visible()
    expect(page.get_by_text(f"e3backup agent enroll --server {live_server.url}", exact=True)).to_be_visible()
    page.get_by_role("button", name="Show the enrollment command").click()
    command = page.get_by_label(re.compile("Command for Initech")).input_value()
    assert command == f"e3backup agent enroll --server {live_server.url}"  # no token in ps or history
    assert re.fullmatch(r"e3e_\S+", page.get_by_label(re.compile("Enrollment token")).input_value())
    shot(page, "02-empty-overview-enroll")
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_text("Enroll a machine first")).to_be_visible()


def _answer_disk_list_later(live: LiveServer, delay: float) -> threading.Thread:
    """Play the agent: wait for the list_disks command, answer after ``delay`` (past the timeout)."""

    def run() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for cmd in live.agent_call("acme-pc", "poll_commands")["commands"]:
                if cmd["type"] == "list_disks":
                    time.sleep(delay)
                    report = {
                        **DISKS,
                        "volumes": [{"path": "E:", "label": "Data", "filesystem": "NTFS", "size_bytes": 2 << 40}],
                    }
                    live.agent_call(
                        "acme-pc",
                        "ack_command",
                        {"command_id": cmd["command_id"], "status": "completed", "result": report},
                    )
                    return
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_wizard_creates_a_files_job_and_a_disk_image_job(ctx: Any, live_server: LiveServer) -> None:
    page = ctx.new_page()
    sign_in(page, live_server.url, "alice@acme.example", "/jobs/new")
    expect(page.get_by_role("heading", name="New backup job")).to_be_visible()
    assert unlabelled_controls(page) == []
    # files: forget the source, get the error next to the field, fix it
    page.get_by_label("Job name", exact=True).fill("Documents")
    page.get_by_label("Endpoint URL", exact=True).fill("https://s3.example.net")
    page.get_by_label("Bucket", exact=True).fill("acme-backups")
    page.get_by_label("Access key ID", exact=True).fill("AKIAEXAMPLE")
    page.get_by_label("Secret access key", exact=True).fill("s3-secret")
    page.get_by_label("Repository password", exact=True).fill("a long repository password")
    page.get_by_role("button", name="Create job").click()
    error = page.locator("#source_paths-error")
    expect(error).to_contain_text("files jobs need source_path or source_paths")
    expect(page.get_by_label("Folders or files", exact=True)).to_have_attribute("aria-invalid", "true")
    shot(page, "03-wizard-field-error")
    page.get_by_label("Folders or files", exact=True).fill("C:\\Users\nD:\\Shares")
    page.get_by_label("Secret access key", exact=True).fill("s3-secret")  # secrets are not echoed back
    page.get_by_label("Repository password", exact=True).fill("a long repository password")
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_role("status")).to_contain_text("Job created")

    # disk image: the engine choice shows the disk fields; the volume comes from the agent's disks
    page.goto(f"{live_server.url}/jobs/new")
    page.get_by_label("Disk Image", exact=True).check()
    expect(page.get_by_label("Folders or files", exact=True)).to_be_hidden()
    volume = page.get_by_label("Volume or disk", exact=True)
    expect(volume).to_be_visible()
    assert "C: (System, NTFS, 499.0 GiB)" in volume.inner_text()
    answering = _answer_disk_list_later(live_server, delay=1.4)  # the first wait (1 s) times out
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#disks-status")).to_contain_text("retry 1 of 3")
    expect(page.locator("#disks-status")).to_contain_text("Disks refreshed", timeout=20_000)
    answering.join(5)
    assert "E: (Data, NTFS, 2.0 TiB)" in volume.inner_text()
    page.get_by_label("Job name", exact=True).fill("System disk")
    page.get_by_label("Image format", exact=True).select_option("raw")
    page.get_by_label("Temporary folder (optional)", exact=True).fill("D:\\Temp")
    page.get_by_label("Endpoint URL", exact=True).fill("https://s3.example.net")
    page.get_by_label("Bucket", exact=True).fill("acme-images")
    page.get_by_label("Access key ID", exact=True).fill("AKIAEXAMPLE")
    page.get_by_label("Secret access key", exact=True).fill("s3-secret")
    page.get_by_label("Repository password", exact=True).fill("a long repository password")
    page.get_by_role("button", name="Create job").click()
    expect(page.locator("#disk_source_volume-error")).to_contain_text("required for disk_image jobs")
    expect(page.get_by_label("Disk Image", exact=True)).to_be_checked()  # the choice survives the error
    page.get_by_label("Volume or disk", exact=True).select_option("C:")
    page.get_by_label("Secret access key", exact=True).fill("s3-secret")
    page.get_by_label("Repository password", exact=True).fill("a long repository password")
    shot(page, "04-wizard-disk-image")
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_role("status")).to_contain_text("Job created")
    expect(page.locator(".facts")).to_contain_text("C:")
    expect(page.locator(".facts")).to_contain_text("RAW")


def test_wizard_sync_choice_shows_the_mirror_fields_and_creates_the_job(ctx: Any, live_server: LiveServer) -> None:
    page = ctx.new_page()
    sign_in(page, live_server.url, "alice@acme.example", "/jobs/new")
    page.get_by_label("Sync", exact=True).check()
    expect(page.get_by_label("Folders or files", exact=True)).to_be_visible()
    expect(page.get_by_label("Volume or disk", exact=True)).to_be_hidden()
    keep = page.get_by_label("Delete from the destination what is gone from the source", exact=True)
    expect(keep).to_be_checked()
    assert unlabelled_controls(page) == []
    keep.uncheck()
    page.get_by_label("Compare files by", exact=True).select_option("checksum")
    page.get_by_label("Job name", exact=True).fill("Share mirror")
    page.get_by_label("Folders or files", exact=True).fill("D:\\Shares")
    page.get_by_label("Endpoint URL", exact=True).fill("https://s3.example.net")
    page.get_by_label("Bucket", exact=True).fill("acme-mirror")
    page.get_by_label("Access key ID", exact=True).fill("AKIAEXAMPLE")
    page.get_by_label("Secret access key", exact=True).fill("s3-secret")
    page.get_by_label("Repository password", exact=True).fill("not used by sync")
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_role("status")).to_contain_text("Job created")
    expect(page.locator(".restore")).to_contain_text("A sync job keeps no snapshots")
    expect(page.locator(".restore")).to_contain_text("acme-mirror")


def _drive_run(live: LiveServer, page: Any, backup_type: str, snapshot: str, events: list[dict[str, Any]]) -> None:
    """Play the agent for the run the page shows, checking that the page follows without reloading."""
    run = live.agent_call("acme-pc", "next_run")["run"]
    assert run is not None and run["engine"] == "disk_image"
    run_id = run["run_id"]
    expect(page.locator("#run")).to_have_attribute("data-run-id", str(run_id))
    page.evaluate("window.__sameDocument = true")
    total = 120 << 30
    for pct in (12, 47):
        live.agent_call(
            "acme-pc",
            "update_run",
            {
                "run_id": run_id,
                "status": "running",
                "progress_pct": pct,
                "bytes_total": total,
                "bytes_processed": total * pct // 100,
                "bytes_uploaded": (total * pct // 100) // 3,
                "speed_bytes_per_sec": 180 << 20,
                "eta_seconds": 300,
                "backup_type": backup_type,
            },
        )
        expect(page.locator("[data-field=progress]")).to_have_text(f"{pct} %")
    expect(page.locator("dd[data-field=speed]")).to_have_text("180.0 MiB/s")
    expect(page.locator("dd[data-field=bytes]")).to_have_text("56.4 GiB of 120.0 GiB")
    expect(page.locator("dd[data-field=backup_type]")).to_have_text(backup_type.capitalize())
    live.agent_call("acme-pc", "push_events", {"run_id": run_id, "events": events})
    for e in events:
        expect(page.locator("#events")).to_contain_text(e["code"])
    assert page.evaluate("window.__sameDocument") is True  # updated live, not reloaded
    return run_id


def test_watch_runs_live_then_chart_and_restore(ctx: Any, live_server: LiveServer) -> None:
    page = ctx.new_page()
    sign_in(page, live_server.url, "alice@acme.example", "/jobs")
    page.get_by_role("link", name="System disk").click()
    expect(page.get_by_text("fill in as runs finish")).to_be_visible()
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("[data-field=status_label]")).to_have_text("Queued")
    run_id = _drive_run(
        live_server,
        page,
        "full",
        SNAPSHOT,
        [
            _event(1, "DISK_IMAGE_STREAM_START", "reading C: via VSS"),
            _event(2, "STORAGE_TLS_FAILED", "x509: certificate signed by unknown authority (retrying)"),
            _event(3, "DISK_IMAGE_READ_RECOVERED", "sector 0x1f400 unreadable, 64 KiB stored as zeros"),
        ],
    )
    tls = page.locator("li.event", has_text="STORAGE_TLS_FAILED")
    expect(tls).to_contain_text("Check the certificate (self-signed or expired?)")
    expect(page.locator("li.event", has_text="DISK_IMAGE_READ_RECOVERED")).to_contain_text("SMART")
    shot(page, "05-run-live")
    live_server.agent_call(
        "acme-pc",
        "push_events",
        {"run_id": run_id, "events": [_event(4, "DISK_IMAGE_STREAM_COMPLETED", "120 GiB in 11 min")]},
    )
    live_server.agent_call(
        "acme-pc",
        "update_run",
        {"run_id": run_id, "status": "warning", "snapshot_id": SNAPSHOT, "bytes_processed": 120 << 30},
    )
    # the stream ends with the run; the page then shows the final state with the restore form
    expect(page.get_by_role("button", name="Restore this snapshot")).to_be_visible()
    expect(page.locator("[data-field=status_label]")).to_have_text("Warning")
    expect(page.locator("[data-field=progress]")).to_have_text("47 %")

    page.get_by_role("link", name="System disk").first.click()
    page.get_by_role("button", name="Run now").click()
    run_2 = _drive_run(
        live_server,
        page,
        "incremental",
        SNAPSHOT_2,
        [_event(1, "DISK_IMAGE_STREAM_START"), _event(2, "DISK_IMAGE_STREAM_COMPLETED")],
    )
    live_server.agent_call("acme-pc", "update_run", {"run_id": run_2, "status": "success", "snapshot_id": SNAPSHOT_2})
    expect(page.locator("[data-field=status_label]")).to_have_text("Success")
    expect(page.locator("[data-field=progress]")).to_have_text("100 %")
    expect(page.locator("dd[data-field=backup_type]")).to_have_text("Incremental")
    shot(page, "06-run-finished")

    expect(page.get_by_label("Onto a disk device of acme-pc")).to_be_disabled()  # none allowed
    page.get_by_label("To an image file (raw or VHDX) in a restore folder").check()
    page.get_by_label("Restore folder", exact=True).select_option("D:\\Restore")
    page.get_by_label("Image file name", exact=True).fill("system.vhdx")
    page.get_by_label("Image file format", exact=True).select_option("vhdx")
    page.get_by_role("button", name="Restore this snapshot").click()
    expect(page.get_by_role("status")).to_contain_text("Restore queued")
    commands = live_server.agent_call("acme-pc", "poll_commands")["commands"]
    restore = [c for c in commands if c["type"] == "restore"]
    assert len(restore) == 1
    assert restore[0]["payload"]["snapshot_id"] == SNAPSHOT_2
    assert restore[0]["payload"]["target_path"] == "D:\\Restore\\system.vhdx"
    assert restore[0]["payload"]["format"] == "vhdx"
    expect(page.locator("#run")).to_have_attribute("data-run-id", str(restore[0]["run_id"]))

    page.get_by_role("link", name="System disk").first.click()
    for chart in (".chart-size", ".chart-duration"):
        expect(page.locator(f"{chart} circle.pt")).to_have_count(2)
    expect(page.locator(".chart-size")).to_have_attribute("data-points", "2")
    shot(page, "07-job-history-chart")
    page.goto(f"{live_server.url}/runs")
    expect(page.locator("tbody tr")).to_have_count(3)  # two backups and the queued restore


def test_tenant_isolation_and_the_admin_switcher(ctx: Any, live_server: LiveServer) -> None:
    page = ctx.new_page()
    sign_in(page, live_server.url, "bob@globex.example", "/agents")
    expect(page.locator("#agents")).to_contain_text("gx-srv")
    expect(page.locator("body")).not_to_contain_text("acme")
    expect(page.get_by_label("Tenant", exact=True)).to_have_count(0)  # no switcher for tenant users
    acme_job = (  # Acme's first job (other browser tests may have made jobs of other tenants)
        live_server.app.state.e3.sessions()
        .execute(
            __import__("sqlalchemy").text("select id from jobs where tenant_id = :t order by id limit 1"),
            {"t": live_server.tenants["Acme"]},
        )
        .scalar_one()
    )
    response = page.goto(f"{live_server.url}/jobs/{acme_job}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, live_server.url, "admin@msp.example", "/agents")
    expect(page.locator("#agents")).to_contain_text("acme-pc")
    expect(page.locator("#agents")).to_contain_text("gx-srv")
    page.get_by_label("Tenant", exact=True).select_option(label="Globex")  # submits on change
    expect(page.get_by_label("Tenant", exact=True)).to_have_value(str(live_server.tenants["Globex"]))
    expect(page.locator("#agents")).not_to_contain_text("acme-pc")
    expect(page.locator("#agents")).to_contain_text("gx-srv")
    shot(page, "08-admin-switcher")


def test_phone_width_has_no_horizontal_scroll(browser: Any, live_server: LiveServer) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        sign_in(page, live_server.url, "alice@acme.example")
        runs = [a.get_attribute("href") for a in page.locator("a[href^='/runs/']").all()]
        jobs = [a.get_attribute("href") for a in page.locator("a[href^='/jobs/']").all()]
        for url in ["/", "/agents", "/jobs", "/jobs/new", "/runs", runs[-1], jobs[0], "/agents/1"]:
            page.goto(f"{live_server.url}{url}")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{url}: {overflow} px of horizontal scroll"
        page.goto(f"{live_server.url}{runs[-1]}")
        shot(page, "09-phone-run")
        page.goto(f"{live_server.url}/jobs/new")
        shot(page, "10-phone-wizard")
    finally:
        context.close()
