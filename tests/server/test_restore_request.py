"""A restore command's payload is read as the agent reads it (``api.requests.RestoreRequest``):
a misspelt or mistyped option is refused at once, naming it, instead of failing on the agent."""

from __future__ import annotations

from tests.server.conftest import World


def test_a_restore_payload_is_typed_at_the_api(world: World) -> None:
    job = world.job()
    url = f"/api/agents/{world.agent_a.id}/commands"
    for payload, field in (
        ({"snapshot_id": "abc", "target_path": "/r", "verfy": True}, "payload.verfy"),
        ({"snapshot_id": "abc", "target_path": "/r", "verify": "yes"}, "payload.verify"),
        ({"snapshot_id": "abc", "target_path": "/r", "paths": "/etc"}, "payload.paths"),
    ):
        r = world.user_a.post(url, json={"type": "restore", "job_id": job["id"], "payload": payload})
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == [field]
    r = world.user_a.post(url, json={"type": "restore", "job_id": job["id"], "payload": {
        "snapshot_id": "abc", "target_path": "/r", "paths": ["/etc"], "verify": False}})
    assert r.status_code == 201, r.text
