"""A Hyper-V job end to end in Chromium: the real server, a real agent (in this process) on the
simulated Hyper-V host, the wizard picking the VM the agent discovered, a Full then an RCT
Incremental run, and the run page showing the per-VM result."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e3backup.agent.client import ServerClient
from e3backup.agent.config import AgentConfig
from e3backup.agent.engines import engines_for
from e3backup.agent.runner import Agent
from e3backup.agent.transport import HttpxTransport
from e3backup.sources.hyperv.sim import SimHost
from tests.conftest import FAST_KDF
from tests.engines.hyperv.conftest import MiB, fill
from tests.server.conftest import PASSWORD
from tests.web.browser import LiveServer, shot, sign_in, unlabelled_controls

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

pytestmark = pytest.mark.slow
USER = "hanna@hyperion.example"


@pytest.fixture
def hv_agent(live_server: LiveServer, tmp_path: Path) -> Iterator[tuple[Agent, SimHost]]:
    """Tenant Hyperion with its user and an agent whose Hyper-V host is simulated."""
    from e3backup.server.services import users

    state = live_server.app.state.e3
    with state.sessions() as s:
        now = state.clock.now()
        tenant = users.create_tenant(s, "Hyperion", now)
        users.create_user(s, state.passwords, now, USER, PASSWORD, False, tenant.id)
        token = users.rotate_enrollment_token(tenant)
        s.commit()
    sim = SimHost.create(tmp_path / "host")
    (tmp_path / "restores").mkdir()
    sim.create_vm("web", [12 * MiB, 8 * MiB])
    sim.create_vm("legacy", [4 * MiB], version="5.0")
    fill(sim, "web", 0, 0, 2 * MiB, 1)
    fill(sim, "web", 1, 3 * MiB, 1 * MiB, 2)
    transport = HttpxTransport.network(live_server.url)
    values = {"server_url": live_server.url, "state_dir": str(tmp_path / "state"),
              "hyperv_host": f"sim:{sim.root}", "local_destination_roots": [str(tmp_path)],
              "restore_roots": [str(tmp_path / "restores")], "progress_interval_seconds": 0.2}
    probe = AgentConfig(agent_token="-", **values)  # type: ignore[arg-type]
    answer = ServerClient(transport).enroll(token, "hv01", "linux", engines=engines_for("linux", probe),
                                            platform="linux")
    agent = Agent(AgentConfig(agent_token=answer.agent_token, agent_id=answer.agent_id, **values),  # type: ignore[arg-type]
                  transport, kdf=FAST_KDF, client_backoff=0.0, delivery_retry=0.05, snapshot_cleanup=lambda: [])
    agent.report_disks()  # discovery: the VMs travel with the disk report
    try:
        yield agent, sim
    finally:
        transport.close()


def _answer_commands(agent: Agent) -> None:
    """Play the agent's command loop until it has answered one command (the disk report)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not agent.commands.poll_once():
        time.sleep(0.1)


def _run_now(page: Any, agent: Agent) -> None:
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("[data-field=status_label]")).to_have_text("Queued")
    assert agent.poll_once()
    assert agent.wait_idle(120)
    agent.outbox.flush(agent.client)


def test_hyperv_job_full_then_incremental_with_per_vm_results(
    browser: Any, live_server: LiveServer, hv_agent: tuple[Agent, SimHost], tmp_path: Path
) -> None:
    agent, sim = hv_agent
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(20_000)
    page = ctx.new_page()
    sign_in(page, live_server.url, USER, "/jobs/new")
    page.get_by_label("Hyper-V", exact=True).check()
    vms = page.locator("#vm-choices")
    expect(vms).to_contain_text("web")
    expect(vms.locator("label", has_text="web").locator("[data-rct=yes]")).to_be_visible()
    expect(vms.locator("label", has_text="legacy")).to_contain_text("no RCT (version below 6.2)")
    # a VM made since the last report appears after "Refresh VMs" (askAgent: the agent answers)
    sim.create_vm("db", [4 * MiB])
    expect(vms).not_to_contain_text("db")
    answering = threading.Thread(target=_answer_commands, args=(agent,), daemon=True)
    answering.start()
    page.get_by_role("button", name="Refresh VMs").click()
    expect(vms.locator("label", has_text="db")).to_be_visible()
    answering.join(20)
    assert unlabelled_controls(page) == []
    page.get_by_label("Job name", exact=True).fill("VMs")
    page.get_by_role("checkbox", name="web").check()
    page.get_by_label("A folder on the agent machine", exact=True).check()
    page.get_by_label("Repository folder", exact=True).fill(str(tmp_path / "repo"))
    page.get_by_label("Repository password", exact=True).fill("a long repository password")
    shot(page, "hyperv-wizard")
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_role("status")).to_contain_text("Job created")

    _run_now(page, agent)
    page.reload()
    row = page.locator("tr[data-vm=web]")
    expect(row.locator("[data-vm-field=backup_type]")).to_have_text("full")
    expect(row.locator("[data-vm-field=result]")).to_contain_text("backed up")
    expect(row.locator("[data-vm-field=consistency]")).to_have_text("application")

    fill(sim, "web", 1, 5 * MiB, 8192, 3)  # the guest writes 8 KiB
    page.get_by_role("link", name="VMs").first.click()
    _run_now(page, agent)
    page.reload()
    expect(page.locator("[data-field=backup_type]").first).to_have_text("Incremental")
    row = page.locator("tr[data-vm=web]")
    expect(row.locator("[data-vm-field=backup_type]")).to_have_text("incremental")
    expect(row.locator("[data-vm-field=changed]")).to_have_text("8.0 KiB")
    expect(row.locator("[data-vm-field=disks]")).to_contain_text("2")
    shot(page, "hyperv-run-per-vm")

    # restore the VM from the run page: its disks as VHDX, registered as a new VM on the host
    page.get_by_label("Virtual machine", exact=True).select_option("web")
    page.get_by_label("Sub-folder (optional)", exact=True).fill("web-restore")
    page.get_by_label("Register with Hyper-V", exact=True).select_option("new")
    page.get_by_role("button", name="Restore the virtual machine").click()
    expect(page.get_by_role("status").first).to_contain_text("Restore queued")
    assert agent.commands.poll_once() == 1
    assert agent.wait_idle(120)
    agent.outbox.flush(agent.client)
    page.reload()
    expect(page.locator("[data-field=status_label]").first).to_have_text("Success")
    restored = tmp_path / "restores" / "web-restore"
    assert sorted(p.name for p in (restored / "Virtual Hard Disks").iterdir()) == ["disk0.vhdx", "disk1.vhdx"]
    copy = next(v for v in sim.list_vms() if v.name == "web-restored")
    original = next(v for v in sim.list_vms() if v.name == "web")
    assert copy.id != original.id and sim.guest_read("web-restored", 1) == sim.guest_read("web", 1)

    # in place of the original: refused until the VM's name is typed, then the guest is put back
    at_backup = sim.guest_read("web", 1)
    fill(sim, "web", 1, 5 * MiB, 8192, 9)  # the guest goes on writing after the backup
    assert sim.guest_read("web", 1) != at_backup
    page.go_back()
    page.reload()
    page.get_by_label("Virtual machine", exact=True).select_option("web")
    page.get_by_label("Sub-folder (optional)", exact=True).fill("web-in-place")
    page.get_by_label("Register with Hyper-V", exact=True).select_option("replace")
    page.get_by_role("button", name="Restore the virtual machine").click()
    expect(page.locator("#confirm_vm-error")).to_contain_text("type the VM's name (web)")
    assert agent.commands.poll_once() == 0  # nothing was queued
    page.get_by_label("To replace the original, type the VM's name", exact=True).fill("web")
    page.get_by_role("button", name="Restore the virtual machine").click()
    expect(page.get_by_role("status").first).to_contain_text("Restore queued")
    assert agent.commands.poll_once() == 1
    assert agent.wait_idle(120)
    agent.outbox.flush(agent.client)
    page.reload()
    expect(page.locator("[data-field=status_label]").first).to_have_text("Success")
    back = next(v for v in sim.list_vms() if v.name == "web")
    assert back.id == original.id and sim.guest_read("web", 1) == at_backup
    ctx.close()
