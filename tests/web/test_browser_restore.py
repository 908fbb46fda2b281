"""Restore journeys in real Chromium against real agents (in-process, over HTTP to the live
server): pick sources in the wizard from the agent's folder listing, back up, browse and search
the snapshot, preview, download a folder as ZIP (unzipped equal), and restore three picked files
to another agent's restore folder (bytes equal).

Runs after ``test_browser.py`` (file order) on the same server, in its own tenant, Umbrella.
"""

from __future__ import annotations

import io
import zipfile
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
from tests.server.conftest import PASSWORD
from tests.web.browser import LiveServer, shot, sign_in, unlabelled_controls

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

LAPTOP = {"width": 1280, "height": 800}
USER = "umbra@umbrella.example"


@pytest.fixture
def ctx(browser: Any) -> Any:
    context = browser.new_context(viewport=LAPTOP, accept_downloads=True)
    context.set_default_timeout(20_000)
    violations: list[str] = []
    context.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    yield context
    context.close()
    assert violations == []


@pytest.fixture
def umbrella(live_server: LiveServer, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Tenant Umbrella with a user and two real agents: umb-src (its sources allowed: src/) and
    umb-dst (restores into dst/)."""
    from e3backup.server.services import users

    state = live_server.app.state.e3
    with state.sessions() as s:
        tenant = users.create_tenant(s, "Umbrella", state.clock.now())
        users.create_user(s, state.passwords, state.clock.now(), USER, PASSWORD, False, tenant.id)
        token = users.rotate_enrollment_token(tenant)
        s.commit()
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "docs" / "deep").mkdir(parents=True)
    dst.mkdir()
    (src / "docs" / "a.txt").write_text("alpha: the quarterly report\n")
    (src / "docs" / "b.txt").write_bytes(b"beta " * 20_000)
    (src / "docs" / "e.bin").write_bytes(bytes(range(256)) * 1000)
    (src / "docs" / "deep" / "c.bin").write_bytes(bytes(reversed(range(256))) * 3000)
    (src / "docs" / "skip.tmp").write_text("temporary\n")
    agents: dict[str, Agent] = {}
    lsblk = (RECORDINGS / "lsblk.json").read_text()
    for host, extra in (("umb-src", {"allowed_sources": [str(src)]}), ("umb-dst", {"restore_roots": [str(dst)]})):
        transport = HttpxTransport.network(live_server.url)
        answer = ServerClient(transport).enroll(token, host, "linux")
        config = AgentConfig(server_url=live_server.url, agent_id=answer.agent_id, agent_token=answer.agent_token,
                             state_dir=str(tmp_path / host), poll_interval_seconds=0.1,
                             command_interval_seconds=0.1, progress_interval_seconds=0.2,
                             local_destination_roots=[str(live_server.data / "repos")], **extra)
        agent = Agent(config, transport, kdf=FAST_KDF, client_backoff=0.0, delivery_retry=0.05,
                      inventory=LsblkInventory(lambda: lsblk), snapshot_cleanup=lambda: [])
        agent.start()
        agents[host] = agent
    try:
        yield {"src": src, "dst": dst, "agents": agents}
    finally:
        for agent in agents.values():
            agent.stop(timeout=30)


@pytest.mark.slow
def test_wizard_folders_backup_browse_zip_and_restore_to_another_agent(
    ctx: Any, live_server: LiveServer, umbrella: dict[str, Any], tmp_path: Path
) -> None:
    src, dst = umbrella["src"], umbrella["dst"]
    docs = src / "docs"
    page = ctx.new_page()
    sign_in(page, live_server.url, USER, "/jobs/new")
    page.get_by_label("Agent (machine)", exact=True).select_option(label="umb-src (linux)")
    page.get_by_role("button", name="Browse the agent's folders").click()
    page.get_by_role("button", name=f"Open {src}", exact=True).click()
    page.get_by_role("button", name=f"Open {docs}", exact=True).click()
    expect(page.locator("#folder-list")).to_contain_text("skip.tmp")
    page.get_by_role("button", name=f"Exclude {docs / 'skip.tmp'}", exact=True).click()
    page.get_by_role("button", name="Up", exact=True).click()
    page.get_by_role("button", name=f"Add {docs} as a source", exact=True).click()
    expect(page.get_by_label("Folders or files", exact=True)).to_have_value(str(docs))
    expect(page.get_by_label("Exclude (optional)", exact=True)).to_have_value(str(docs / "skip.tmp"))
    assert unlabelled_controls(page) == []
    shot(page, "20-wizard-folder-browser")
    page.get_by_label("Job name", exact=True).fill("Umbrella docs")
    page.get_by_label("A folder on the agent machine", exact=True).check()
    page.get_by_label("Repository folder", exact=True).fill(str(live_server.data / "repos" / "umbrella"))
    page.get_by_label("Repository password", exact=True).fill("umbrella repository password")
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_role("status")).to_contain_text("Job created")
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("[data-field=status_label]")).to_have_text("Success", timeout=60_000)

    # browse the snapshot: search, open the folder, preview
    page.get_by_role("link", name="Browse its files").click()
    page.get_by_label("Search by name", exact=True).fill("c.bin")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#search-status")).to_contain_text("1 entry named like")
    assert page.locator("#entries tbody tr").count() == 1
    expect(page.locator("#entries")).not_to_contain_text("skip.tmp")
    folder = str(docs).lstrip("/")
    page.goto(f"{live_server.url}{page.url.split(live_server.url)[1].split('?')[0]}?path={folder}")
    expect(page.locator("#entries tbody tr")).to_have_count(4)  # deep/, a.txt, b.txt, e.bin: skip.tmp excluded
    shot(page, "21-snapshot-browser")
    page.locator("tr", has_text="a.txt").get_by_role("link", name="Preview").click()
    expect(page.locator("#preview")).to_have_text("alpha: the quarterly report\n")
    page.go_back()

    # download the folder deep/ as ZIP
    page.get_by_label("Select deep", exact=True).check()
    page.get_by_label("Download the selection as", exact=True).select_option("zip")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download selected").click()
    data = Path(info.value.path()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert sorted(z.namelist()) == ["deep/", "deep/c.bin"]
        assert z.read("deep/c.bin") == (docs / "deep" / "c.bin").read_bytes()
    page.get_by_label("Select deep", exact=True).uncheck()

    # restore three picked files to the other agent's restore folder
    for name in ("a.txt", "b.txt", "e.bin"):
        page.get_by_label(f"Select {name}", exact=True).check()
    page.get_by_role("button", name="Restore selected…").click()
    expect(page.get_by_role("heading", name="Restore 3 picked entries")).to_be_visible()
    page.get_by_label("Restore on", exact=True).select_option(label="umb-dst")
    page.get_by_role("button", name="Update the preview").click()
    page.get_by_label("Restore folder", exact=True).select_option(str(dst))
    page.get_by_label("Sub-folder (optional)", exact=True).fill("ticket-42")
    page.get_by_role("button", name="Update the preview").click()
    expect(page.locator("#landing")).to_contain_text(f"{dst}/ticket-42/a.txt")
    assert unlabelled_controls(page) == []
    shot(page, "22-pick-restore-preview")
    page.get_by_role("button", name="Restore", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Restore queued")
    expect(page.locator("[data-field=status_label]")).to_have_text("Success", timeout=60_000)
    restored = dst / "ticket-42"
    assert sorted(p.name for p in restored.iterdir()) == ["a.txt", "b.txt", "e.bin"]
    for name in ("a.txt", "b.txt", "e.bin"):
        assert (restored / name).read_bytes() == (docs / name).read_bytes()
    shot(page, "23-pick-restore-done")
