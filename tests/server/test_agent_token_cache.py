"""The agent token cache (``security.agent_tokens``): an agent's frequent calls skip the token
lookup, and revoking the agent still locks it out at once, on this replica and on the others."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from e3backup.server import create_app
from e3backup.server.security.agent_tokens import AgentTokenCache
from e3backup.server.security.tokens import hash_token
from tests.server.conftest import Actor, FakeClock, World, make_settings

AGENT_CALLS = ("/api/agent/next_run", "/api/agent/poll_commands")


def _token_hash(agent: Actor) -> str:
    return hash_token(agent.headers["Authorization"].removeprefix("Bearer "))


def test_a_cached_agent_is_locked_out_as_soon_as_it_is_revoked(app: FastAPI, world: World) -> None:
    cache: AgentTokenCache = app.state.e3.agent_tokens
    for path in AGENT_CALLS:
        assert world.agent_a.post(path).status_code == 200
    assert cache.get(_token_hash(world.agent_a)) is not None  # its calls are answered from the cache
    assert world.user_a.post(f"/api/agents/{world.agent_a.id}/revoke").status_code == 200
    assert cache.get(_token_hash(world.agent_a)) is None
    for path in (*AGENT_CALLS, "/api/agent/update_run", "/api/agent/push_events"):
        r = world.agent_a.post(path, json={"run_id": 1, "events": []})
        assert r.status_code == 401, (path, r.text)
        assert r.json()["detail"] == "unknown or revoked agent token"
    assert world.agent_b.post("/api/agent/next_run").status_code == 200  # another agent is not affected


def test_a_deleted_agent_is_locked_out_too(app: FastAPI, world: World) -> None:
    assert world.agent_a.post("/api/agent/poll_commands").status_code == 200
    assert world.user_a.delete(f"/api/agents/{world.agent_a.id}").status_code == 204
    assert world.agent_a.post("/api/agent/poll_commands").status_code == 401


def test_unknown_tokens_are_not_cached(app: FastAPI, world: World) -> None:
    cache: AgentTokenCache = app.state.e3.agent_tokens
    before = len(cache)
    for i in range(3):
        r = world.client.post("/api/agent/next_run", headers={"Authorization": f"Bearer e3a_x{i}"})
        assert r.status_code == 401
    assert len(cache) == before


def test_cache_entries_expire_and_races_with_a_revocation_are_not_kept() -> None:
    now = [100.0]
    cache = AgentTokenCache(ttl=60, monotonic=lambda: now[0])
    cache.put("h1", 7, 1, None, cache.generation())
    assert cache.get("h1") is not None
    now[0] += 61
    assert cache.get("h1") is None  # a change made outside the server is seen within the TTL
    generation = cache.generation()  # a lookup reads the row (not revoked yet) ...
    cache.on_wake("agent:7")  # ... a revocation commits meanwhile ...
    cache.put("h1", 7, 1, None, generation)  # ... and what the lookup read is not kept
    assert cache.get("h1") is None
    cache.put("h1", 7, 1, None, cache.generation())
    cache.put("h2", 8, 1, None, cache.generation())
    cache.on_wake("run:7")  # other wake-ups leave it alone
    assert cache.get("h1") is not None
    cache.on_wake(None)  # the bus reconnected: notifications may be lost, everything goes
    assert cache.get("h1") is None and cache.get("h2") is None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_revocation_on_one_replica_reaches_the_others(
    app: FastAPI, world: World, tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """Two replicas on one PostgreSQL: replica B caches the agent, replica A revokes it, and B
    refuses the agent once A's NOTIFY reaches B's LISTEN connection (a bounded wait)."""
    pause = threading.Event()
    app_b = create_app(make_settings(tmp_path / "b", database_url), clock=clock)
    with TestClient(app_b) as client_b:
        deadline = time.monotonic() + 30
        # listening first: a LISTEN connection that comes up empties its replica's cache
        while not (app.state.e3.bus.connected and app_b.state.e3.bus.connected):
            assert time.monotonic() < deadline, "the replicas did not start listening"
            pause.wait(0.05)
        agent_on_b = Actor(client_b, dict(world.agent_a.headers))
        assert agent_on_b.post("/api/agent/next_run").status_code == 200
        assert app_b.state.e3.agent_tokens.get(_token_hash(world.agent_a)) is not None
        assert world.user_a.post(f"/api/agents/{world.agent_a.id}/revoke").status_code == 200
        deadline = time.monotonic() + 30
        while app_b.state.e3.agent_tokens.get(_token_hash(world.agent_a)) is not None:
            assert time.monotonic() < deadline, "replica B never heard of the revocation"
            pause.wait(0.05)
        r = agent_on_b.post("/api/agent/next_run")
        assert r.status_code == 401 and r.json()["detail"] == "unknown or revoked agent token"


def test_a_revocation_made_outside_the_server_is_seen_at_the_next_call(
    app: FastAPI, world: World, clock: FakeClock
) -> None:
    """No notification (an ``UPDATE`` in psql): the call's first statement on the agent's row
    (the ``last_seen`` write when due, else a read) requires the agent not to be revoked."""
    from sqlalchemy import update

    from e3backup.server.db.models import Agent

    assert world.agent_a.post("/api/agent/poll_commands").status_code == 200
    with app.state.e3.sessions() as session:
        session.execute(update(Agent).where(Agent.id == world.agent_a.id).values(revoked=True))
        session.commit()
    assert app.state.e3.agent_tokens.get(_token_hash(world.agent_a)) is not None  # nobody told the cache
    r = world.agent_a.post("/api/agent/poll_commands")  # within 10 s: no last_seen write, a read
    assert r.status_code == 401 and r.json()["detail"] == "unknown or revoked agent token"
    assert app.state.e3.agent_tokens.get(_token_hash(world.agent_a)) is None
    clock.advance(seconds=11)
    assert world.agent_a.post("/api/agent/next_run").status_code == 401
