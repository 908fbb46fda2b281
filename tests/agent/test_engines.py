"""The agent reports the engines its dispatch table runs on its platform; the server keeps them
and refuses a job the agent cannot run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from e3backup.agent.engines import engines_for
from e3backup.agent.runner import Agent
from e3backup.api.common import Engine

from .conftest import REPO_PASSWORD, Harness


def _reported(harness: Harness, agent: Agent) -> dict[str, Any] | None:
    shown: dict[str, Any] = harness.api("GET", f"/api/agents/{agent.config.agent_id}").json()
    return shown if shown["engines"] is not None else None


def test_engines_come_from_the_dispatch_table() -> None:
    assert engines_for("linux") == [Engine.FILES, Engine.DISK_IMAGE, Engine.SYNC]
    assert engines_for("win32") == [Engine.FILES, Engine.DISK_IMAGE, Engine.HYPERV, Engine.SYNC]  # VSS


def test_hyperv_is_offered_where_there_is_a_hyperv_host(tmp_path: Path) -> None:
    from e3backup.agent.config import AgentConfig

    plain = AgentConfig(server_url="http://s", agent_token="t", state_dir=str(tmp_path))
    sim = AgentConfig(server_url="http://s", agent_token="t", state_dir=str(tmp_path), hyperv_host="sim:/srv/vms")
    assert Engine.HYPERV not in engines_for("linux", plain)
    assert engines_for("linux", sim) == [Engine.FILES, Engine.DISK_IMAGE, Engine.HYPERV, Engine.SYNC]
    assert Engine.HYPERV in engines_for("win32", plain)  # the local Hyper-V


def test_the_heartbeat_reports_engines_and_the_server_refuses_what_the_agent_cannot_run(
    harness: Harness, tmp_path: Path
) -> None:
    agent, transport = harness.make_agent()
    shown = harness.api("GET", f"/api/agents/{agent.config.agent_id}").json()
    assert shown["engines"] is None  # enrolled without saying: nothing is filtered yet
    mac = Agent(agent.config, transport, platform="darwin", inventory=agent.inventory,
                snapshot_cleanup=lambda: [])
    mac.start()  # its first poll says what it runs: no disk images (neither LVM nor VSS there)
    try:
        shown = harness.wait_for(lambda: _reported(harness, agent), message="engines reported")
    finally:
        mac.stop(timeout=30)
    assert (shown["engines"], shown["platform"]) == (["files", "sync"], "darwin")

    harness.client.cookies.clear()
    body = {"name": "image", "engine": "disk_image", "agent_id": agent.config.agent_id,
            "disk_source_volume": "/dev/sdz",
            "destination": {"type": "local", "path": str(tmp_path / "r"), "repository_password": REPO_PASSWORD}}
    r = harness.client.post("/api/jobs", json=body, headers=harness.admin_headers)
    assert r.status_code == 422
    assert "cannot run disk_image jobs; it runs files, sync" in r.text and "engine" in r.text

    agent.start()  # the Linux agent: files, disk_image and sync
    harness.wait_for(lambda: (_reported(harness, agent) or {}).get("platform") == "linux", message="linux")
    shown = harness.api("GET", f"/api/agents/{agent.config.agent_id}").json()
    assert (shown["engines"], shown["platform"]) == (["files", "disk_image", "sync"], "linux")
    harness.client.cookies.clear()
    r = harness.client.post("/api/jobs", json=body, headers=harness.admin_headers)
    assert r.status_code == 201, r.text
