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

import httpx
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


@pytest.mark.slow
def test_image_backup_browsed_then_restored_onto_a_loop_device_from_the_dashboard(
    ctx: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    """A GPT disk (ext4 + NTFS) on a loop device, backed up by a real agent, browsed in both
    partitions, then restored from the dashboard onto another loop device in the agent's
    allowed_devices: every extent the backup read is equal on the target."""
    import os
    import shutil

    from e3backup.repo import Repository
    from e3backup.sources.stored_image import load_image_snapshot
    from e3backup.store import LocalStore
    from tests.sources.diskimages import loop_device
    from tests.web.test_browse_image import EXT4, NTFS, _disk

    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("losetup", "sgdisk", "mkntfs")):
        pytest.skip("needs root (loop devices), gdisk and ntfs-3g")
    from e3backup.server.services import users

    disk, target = tmp_path / "disk.img", tmp_path / "target.img"
    _disk(disk)
    target.write_bytes(b"\xa5" * disk.stat().st_size)  # garbage to be overwritten
    state = live_server.app.state.e3
    with state.sessions() as s:
        tenant = users.create_tenant(s, "Initrode", state.clock.now())
        users.create_user(s, state.passwords, state.clock.now(), "ina@initrode.example", PASSWORD, False, tenant.id)
        token = users.rotate_enrollment_token(tenant)
        s.commit()
    repo_dir = live_server.data / "repos" / "initrode"
    with loop_device(disk, ro=True) as source, loop_device(target) as dest:
        transport = HttpxTransport.network(live_server.url)
        answer = ServerClient(transport).enroll(token, "ini-host", "linux")
        lsblk = (RECORDINGS / "lsblk.json").read_text()
        agent = Agent(AgentConfig(server_url=live_server.url, agent_id=answer.agent_id,
                                  agent_token=answer.agent_token, state_dir=str(tmp_path / "state"),
                                  poll_interval_seconds=0.1, command_interval_seconds=0.1,
                                  local_destination_roots=[str(live_server.data / "repos")],
                                  restore_roots=[str(tmp_path)], allowed_devices=[dest]),
                      transport, kdf=FAST_KDF, client_backoff=0.0, delivery_retry=0.05,
                      inventory=LsblkInventory(lambda: lsblk), snapshot_cleanup=lambda: [])
        agent.start()
        try:
            page = ctx.new_page()
            sign_in(page, live_server.url, "ina@initrode.example", "/jobs")
            cookie = {c["name"]: c["value"] for c in ctx.cookies()}["e3_session"]
            csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
            r = httpx.post(  # the job through the API, as the wizard would send it
                f"{live_server.url}/api/jobs", headers={"Cookie": f"e3_session={cookie}", "X-CSRF-Token": csrf or ""},
                json={"name": "Server disk", "engine": "disk_image", "agent_id": answer.agent_id,
                      "disk_source_volume": source, "disk_image_format": "raw",
                      "destination": {"type": "local", "path": str(repo_dir),
                                      "repository_password": "initrode repository password"}})
            assert r.status_code == 201, r.text
            page.goto(f"{live_server.url}/jobs/{r.json()['id']}")
            page.get_by_role("button", name="Run now").click()
            # Warning: a loop device has no snapshot provider, so it is read live (said as an event)
            expect(page.locator("[data-field=status_label]")).to_have_text("Warning", timeout=90_000)
            backup_url = page.url

            page.get_by_role("link", name="Browse its partitions").click()
            expect(page.locator("#entries tbody tr")).to_have_count(2)
            page.get_by_role("link", name="1-root/").click()
            page.get_by_role("link", name="dir/").click()
            page.get_by_role("link", name="sub/").click()
            expect(page.locator("#entries")).to_contain_text("195.3 KiB")  # c.bin, read from ext4
            page.get_by_label("Search by name", exact=True).fill("report")
            page.get_by_role("button", name="Search", exact=True).click()
            page.locator("tr", has_text="2-data/report.txt").get_by_role("link", name="Preview").click()
            expect(page.locator("#preview")).to_have_text("NTFS says hello\n")
            shot(page, "24-image-ntfs-preview")

            # pick a file of each partition (ext4, NTFS) and restore them into a folder of the agent
            page.go_back()
            page.get_by_label("Search by name", exact=True).fill(".txt")
            page.get_by_role("button", name="Search", exact=True).click()
            page.get_by_label("Select 1-root/notes.txt", exact=True).check()
            page.get_by_label("Select 2-data/report.txt", exact=True).check()
            page.get_by_role("button", name="Restore selected…").click()
            expect(page.get_by_role("heading", name="Restore 2 picked entries")).to_be_visible()
            page.get_by_label("Restore folder", exact=True).select_option(str(tmp_path))
            page.get_by_label("Sub-folder (optional)", exact=True).fill("picked")
            page.get_by_role("button", name="Update the preview").click()
            expect(page.locator("#landing")).to_contain_text(f"{tmp_path}/picked/2-data/report.txt")
            assert page.locator("#where-original").count() == 0  # a partition has no original folder
            assert unlabelled_controls(page) == []
            shot(page, "26-image-pick-restore")
            page.get_by_role("button", name="Restore", exact=True).click()
            expect(page.get_by_role("status")).to_contain_text("Restore queued")
            expect(page.locator("[data-field=status_label]")).to_have_text("Success", timeout=90_000)
            picked = tmp_path / "picked"
            assert (picked / "1-root" / "notes.txt").read_bytes() == EXT4["notes.txt"]
            assert (picked / "2-data" / "report.txt").read_bytes() == NTFS["report.txt"]

            page.goto(backup_url.split("?")[0])
            page.get_by_label("Onto a disk device of ini-host", exact=True).check()
            page.get_by_label("Device", exact=True).select_option(dest)
            shot(page, "25-image-restore-to-device")
            page.get_by_role("button", name="Restore this snapshot").click()
            expect(page.get_by_role("status")).to_contain_text("Restore queued")
            expect(page.locator("[data-field=status_label]")).to_have_text("Success", timeout=90_000)
        finally:
            agent.stop(timeout=30)
        repo = Repository.open(LocalStore(repo_dir), b"initrode repository password")
        repo.load_index()
        img = load_image_snapshot(repo, repo.snapshots()[-1])
        repo.close()
        with open(source, "rb") as a, open(dest, "rb") as b:
            checked = 0
            for extent in img.plan:
                offset, length = extent.offset, extent.length
                a.seek(offset)
                b.seek(offset)
                assert a.read(length) == b.read(length), f"extent at {offset} differs"
                checked += length
        assert checked > 1 << 20
