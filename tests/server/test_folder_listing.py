"""The wizard's remote folder browsing over the API: the server asks the agent (``list_folder``)
and waits like for the disk list; a late agent is waited for again with ``command_id``."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from e3backup.server.db.models import AuditEvent
from tests.server.conftest import World

SHORT = {"disk_list_timeout_seconds": 0.2}
LISTING = {"path": "C:\\Users", "parent": "C:\\", "truncated": False,
           "entries": [{"name": "ann", "path": "C:\\Users\\ann", "type": "dir", "size": 0}]}


def _ack(world: World, cmd_id: int, body: dict[str, Any]) -> None:
    r = world.agent_a.post("/api/agent/ack_command", json={"command_id": cmd_id, **body})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("settings_overrides", [SHORT], indirect=True)
def test_a_late_answer_is_waited_for_with_the_command_id(world: World) -> None:
    url = f"/api/agents/{world.agent_a.id}/folders"
    r = world.user_a.post(url, params={"path": "C:\\Users"})
    assert r.status_code == 504 and r.json()["retry"] is True
    cmd_id = r.json()["command_id"]
    cmds = world.agent_a.post("/api/agent/poll_commands").json()["commands"]
    assert [(c["type"], c["payload"]) for c in cmds] == [("list_folder", {"path": "C:\\Users"})]
    _ack(world, cmd_id, {"status": "completed", "result": LISTING})
    r = world.user_a.post(url, params={"path": "C:\\Users", "command_id": cmd_id})
    assert r.status_code == 200 and r.json()["entries"][0]["path"] == "C:\\Users\\ann"
    # the agent's refusal comes back as 502 with its reason
    r = world.user_a.post(url, params={"path": "C:\\nope"})
    refusal = {"status": "failed", "error": "cannot list the folder: C:\\nope does not exist"}
    _ack(world, r.json()["command_id"], refusal)
    r = world.user_a.post(url, params={"path": "C:\\nope", "command_id": r.json()["command_id"]})
    assert r.status_code == 502 and "C:\\nope does not exist" in r.json()["detail"]
    # another tenant's agent, another agent's command, a NUL: refused
    assert world.user_b.post(url, params={"path": "C:\\"}).status_code == 404
    other = f"/api/agents/{world.agent_b.id}/folders"
    assert world.user_b.post(other, params={"command_id": cmd_id}).status_code == 404
    assert world.user_a.post(url, params={"path": "C:\\a\x00b"}).status_code == 422
    with world.client.app.state.e3.sessions() as s:  # type: ignore[attr-defined]
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action == "agent.list_folder"))
        paths = [e.details["path"] for e in rows]
    assert paths == ["C:\\Users", "C:\\nope"]
