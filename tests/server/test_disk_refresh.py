"""The job wizard's fresh disk list: the server asks the agent and waits (30 s by default).

The agent is simulated on another thread with its own client. No sleeping for timing: the
"late" agent answers only once the user's request is known to be waiting, and the agent that
never answers meets a short configured timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.server.conftest import World
from tests.server.test_agent_api import DISKS

# a long re-read interval: the answer must arrive through the in-process wake-up
LONG = {"disk_list_timeout_seconds": 20.0, "command_poll_interval_seconds": 10.0}
SHORT = {"disk_list_timeout_seconds": 0.3}


def _agent_thread(app: FastAPI, token: str, answer: Callable[[int], dict[str, Any]]) -> threading.Thread:
    """An agent that polls until a list_disks command is pending and its requester is waiting,
    then acknowledges it with ``answer(command_id)``."""
    state = app.state.e3
    headers = {"Authorization": f"Bearer {token}"}
    done = threading.Event()

    def run() -> None:
        agent = TestClient(app)
        for _ in range(2000):  # bounded: the test fails rather than hangs
            cmds = agent.post("/api/agent/poll_commands", headers=headers).json()["commands"]
            pending = [c for c in cmds if c["type"] == "list_disks"]
            if pending and state.waiters.is_waiting(f"command:{pending[0]['command_id']}"):
                cid = pending[0]["command_id"]
                agent.post(
                    "/api/agent/ack_command",
                    headers=headers,
                    json={"command_id": cid, "status": "acknowledged"},
                )
                r = agent.post("/api/agent/ack_command", headers=headers, json=answer(cid))
                assert r.status_code == 200, r.text
                return
            done.wait(0.01)
        raise AssertionError("the disk-list request never waited")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _token(world: World) -> str:
    return world.agent_a.headers["Authorization"].split()[1]


@pytest.mark.parametrize("settings_overrides", [LONG], indirect=True)
def test_agent_answering_late_is_waited_for(app: FastAPI, world: World) -> None:
    thread = _agent_thread(
        app, _token(world), lambda cid: {"command_id": cid, "status": "completed", "result": DISKS}
    )
    r = world.user_a.post(f"/api/agents/{world.agent_a.id}/disks/refresh")
    thread.join(timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["disks"][0]["model"] == "Samsung SSD"
    assert (
        world.user_a.get(f"/api/agents/{world.agent_a.id}/disks").json()["disks"][0]["partition_style"]
        == "gpt"
    )
    cmds = world.user_a.get(f"/api/agents/{world.agent_a.id}/commands").json()
    assert [(c["type"], c["status"]) for c in cmds] == [("list_disks", "completed")]


@pytest.mark.parametrize("settings_overrides", [SHORT], indirect=True)
def test_agent_never_answering_gets_a_retryable_504(app: FastAPI, world: World) -> None:
    url = f"/api/agents/{world.agent_a.id}/disks/refresh"
    r = world.user_a.post(url)
    assert r.status_code == 504
    body = r.json()
    assert body["retry"] is True
    assert "did not answer" in body["detail"]
    command_id = body["command_id"]
    # the browser retries (up to 3 times) on the same command: no new command is queued
    for _ in range(2):
        r = world.user_a.post(url, params={"command_id": command_id})
        assert (r.status_code, r.json()["command_id"]) == (504, command_id)
    assert len(world.user_a.get(f"/api/agents/{world.agent_a.id}/commands").json()) == 1
    # when the agent finally answers, the next retry gets the list at once
    world.agent_a.post(
        "/api/agent/ack_command", json={"command_id": command_id, "status": "completed", "result": DISKS}
    )
    r = world.user_a.post(url, params={"command_id": command_id})
    assert r.status_code == 200
    assert r.json()["disks"][0]["path"] == "\\\\.\\PhysicalDrive0"


@pytest.mark.parametrize("settings_overrides", [LONG], indirect=True)
def test_agent_reporting_an_error_gives_502(app: FastAPI, world: World) -> None:
    thread = _agent_thread(
        app,
        _token(world),
        lambda cid: {"command_id": cid, "status": "failed", "error": "WMI is not responding"},
    )
    r = world.user_a.post(f"/api/agents/{world.agent_a.id}/disks/refresh")
    thread.join(timeout=30)
    assert r.status_code == 502
    assert "WMI is not responding" in r.json()["detail"]


@pytest.mark.parametrize("settings_overrides", [SHORT], indirect=True)
def test_refresh_scoping(world: World) -> None:
    assert world.user_b.post(f"/api/agents/{world.agent_a.id}/disks/refresh").status_code == 404
    r = world.user_a.post(f"/api/agents/{world.agent_a.id}/disks/refresh", params={"command_id": 12345})
    assert r.status_code == 404
    world.user_a.post(f"/api/agents/{world.agent_a.id}/revoke")
    assert world.user_a.post(f"/api/agents/{world.agent_a.id}/disks/refresh").status_code == 409
