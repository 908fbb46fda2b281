"""Polls checked together (``routes/poll_batches.py``, ``services/idle_check.py``): each agent
gets its own queued run exactly once, an idle poll the idle answer, a revoked agent 401, and a
failed check falls back to answering each poll alone. First calls looked up together
(``routes/agent_lookups.py``). On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from e3backup.api.agent import NextRunRequest
from e3backup.api.common import RunKind
from e3backup.server import create_app
from e3backup.server.db.models import Agent, Command, Run
from e3backup.server.routes.agent_lookups import AgentLookups
from e3backup.server.routes.poll_batches import PollBatcher
from e3backup.server.services import idle_check
from e3backup.server.services.idle_check import Poll, Verdict
from tests.helpers import run_coroutine
from tests.server.conftest import Actor, FakeClock, World, enroll, make_settings

IDLE_RUN = {"run": None, "update": None}
IDLE_COMMANDS = {"commands": []}


def _queue_run(world: World, owner: Actor, name: str) -> int:
    job = world.job(owner, name=name, storage_mode="direct")
    r = owner.post(f"/api/jobs/{job['id']}/run")
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _gated_checks(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Holds every check until the returned event is set: polls sent meanwhile queue up."""
    gate = threading.Event()
    real = idle_check.check

    def held(*args: Any) -> list[Verdict]:
        assert gate.wait(timeout=60), "the test never released the check"
        return real(*args)

    monkeypatch.setattr(idle_check, "check", held)
    return gate


async def _together(
    app: FastAPI, calls: list[tuple[Actor, str, dict[str, Any]]], gate: threading.Event,
    queued: Callable[[], int] | None = None,
) -> list[httpx.Response]:
    """Sends every call at once; releases the gate once all but the first wait for a batch
    (``queued``: the poll batcher's queue unless given)."""
    queued = queued or app.state.poll_batcher.queued
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        tasks = [asyncio.ensure_future(c.post(path, headers=a.headers, **kw)) for a, path, kw in calls]
        for _ in range(100_000):  # yields to the loop (no sleep) until the calls are queued
            if queued() == len(calls) - 1:
                break
            await asyncio.sleep(0)
        assert queued() == len(calls) - 1
        gate.set()
        return list(await asyncio.gather(*tasks))


def test_polls_sent_together_are_checked_together_and_each_run_is_handed_out_once(
    app: FastAPI, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_a, run_b = _queue_run(world, world.user_a, "A"), _queue_run(world, world.user_b, "B")
    for agent in (world.agent_a, world.agent_b):  # their tokens cached: the polls take the fast path
        assert agent.post("/api/agent/poll_commands").json() == IDLE_COMMANDS
    batcher: PollBatcher = app.state.poll_batcher
    batcher.max_in_flight = 1
    before = (batcher.batches, batcher.checked)
    gate = _gated_checks(monkeypatch)
    a, b = world.agent_a, world.agent_b
    next_run = "/api/agent/next_run"
    calls = [
        (a, next_run, {"json": {}}),
        (b, next_run, {"json": {}}),
        (a, next_run, {"params": {"kind": "backup"}}),
        (b, next_run, {"json": {"agent_version": "1.0"}}),
        (a, "/api/agent/poll_commands", {}),
        (b, "/api/agent/poll_commands", {}),
    ]
    answers = [r.json() for r in run_coroutine(_together(app, calls, gate))]
    assert (batcher.batches - before[0], batcher.checked - before[1]) == (2, 6)  # the first alone, then five
    assert answers[4:] == [IDLE_COMMANDS, IDLE_COMMANDS]
    handed = [(i, ans["run"]["run_id"]) for i, ans in enumerate(answers[:4]) if ans["run"] is not None]
    assert sorted(run for _, run in handed) == sorted([run_a, run_b])  # each once...
    assert {run: i % 2 for i, run in handed} == {run_a: 0, run_b: 1}  # ...to its own agent
    assert [ans for ans in answers[:4] if ans["run"] is None] == [IDLE_RUN, IDLE_RUN]
    with app.state.e3.sessions() as s:
        runs = {r.id: (r.status, r.agent_id) for r in s.scalars(select(Run))}
    assert runs == {run_a: ("running", a.id), run_b: ("running", b.id)}


def test_a_run_seen_by_checks_on_two_replicas_at_once_is_claimed_once(
    app: FastAPI, world: World, database_url: str, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL database")
    run = _queue_run(world, world.user_a, "A")
    other = create_app(make_settings(tmp_path / "replica2", database_url), clock=clock)
    with TestClient(other) as second:
        agent = world.agent_a
        for client in (world.client, second):  # the token cached on both replicas
            assert client.post("/api/agent/poll_commands", headers=agent.headers).json() == IDLE_COMMANDS
        entered, release, lock = threading.Event(), threading.Event(), threading.Lock()
        count = [0]
        real = idle_check.check

        def held(*args: Any) -> list[Verdict]:
            with lock:
                count[0] += 1
                if count[0] == 4:
                    entered.set()
            assert release.wait(timeout=60), "the test never released the checks"
            return real(*args)

        monkeypatch.setattr(idle_check, "check", held)

        async def polls() -> list[Any]:
            clients = [
                httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://testserver")
                for a in (app, other)
            ]
            tasks = [
                asyncio.ensure_future(c.post("/api/agent/next_run", headers=agent.headers, json={}))
                for c in clients
                for _ in range(2)
            ]
            await asyncio.to_thread(entered.wait)  # two checks on each replica, all four see the run
            release.set()
            answers = [r.json() for r in await asyncio.gather(*tasks)]
            for c in clients:
                await c.aclose()
            return answers

        answers = run_coroutine(polls())
    assert sorted(a["run"]["run_id"] for a in answers if a["run"] is not None) == [run]
    assert answers.count(IDLE_RUN) == 3


def test_an_agent_revoked_behind_the_token_cache_is_refused(app: FastAPI, world: World) -> None:
    agent = world.agent_a
    for a in (agent, world.agent_b, agent):  # a first call is looked up, then checked as any other
        assert a.post("/api/agent/next_run", json={}).json() == IDLE_RUN
    state = app.state.e3
    with state.engine.begin() as conn:  # as an operator's UPDATE in psql would: no notification
        conn.execute(update(Agent).where(Agent.id == agent.id).values(revoked=True))
    assert len(state.agent_tokens) == 2 and app.state.poll_batcher.checked == 3
    r = agent.post("/api/agent/poll_commands")  # not due for last_seen: the check's read refuses it
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert len(state.agent_tokens) == 1  # forgotten
    assert agent.post("/api/agent/next_run", json={}).status_code == 401
    assert world.agent_b.post("/api/agent/next_run", json={}).json() == IDLE_RUN


def _restarted(app: FastAPI, world: World) -> tuple[Actor, Actor]:
    """Two more agents of tenant A, one of them revoked, and the token cache empty: every agent's
    next call is its first to this process, as after a restart."""
    laptop = enroll(world.client, world.enroll_a, "acme-laptop")
    old = enroll(world.client, world.enroll_a, "acme-old")
    state = app.state.e3
    with state.engine.begin() as conn:
        conn.execute(update(Agent).where(Agent.id == old.id).values(revoked=True))
    state.agent_tokens.clear()
    return laptop, old


def test_first_calls_arriving_together_are_looked_up_in_one_query(
    app: FastAPI, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop, old = _restarted(app, world)
    stranger = Actor(world.client, {"Authorization": "Bearer e3a_not-a-token-of-ours"})
    lookups: AgentLookups = app.state.agent_lookups
    lookups._coalescer.max_in_flight = 1
    gate, real = threading.Event(), lookups._coalescer.work

    def held(batch: list[tuple[str, str]]) -> Any:
        assert gate.wait(timeout=60), "the test never released the lookup"
        return real(batch)

    monkeypatch.setattr(lookups._coalescer, "work", held)
    agents = [world.agent_a, world.agent_b, laptop, old, stranger]
    calls = [(a, "/api/agent/next_run", {"json": {}}) for a in agents]
    answers = run_coroutine(_together(app, calls, gate, lookups._coalescer.queued))
    assert (lookups.batches, lookups.looked_up) == (2, 5)  # the first alone, then four in one query
    assert [r.json() for r in answers[:3]] == [IDLE_RUN] * 3
    assert [r.status_code for r in answers[3:]] == [401, 401]  # revoked, unknown: the app's answer
    assert len(app.state.e3.agent_tokens) == 3  # unknown and revoked tokens are never cached


def test_a_failed_lookup_leaves_the_call_to_the_app(
    app: FastAPI, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop, old = _restarted(app, world)
    lookups: AgentLookups = app.state.agent_lookups

    tried = []

    def broken(batch: Any) -> Any:
        tried.append(len(batch))
        raise RuntimeError("the database went away")

    monkeypatch.setattr(lookups._coalescer, "work", broken)
    assert laptop.post("/api/agent/next_run", json={}).json() == IDLE_RUN  # the route looked it up
    assert old.post("/api/agent/next_run", json={}).status_code == 401
    assert tried == [1, 1] and lookups.batches == 0


def test_an_agent_revoked_while_its_lookup_runs_is_not_cached(
    app: FastAPI, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop, _ = _restarted(app, world)
    tokens = app.state.e3.agent_tokens
    real = tokens.generation

    def revoked_meanwhile() -> int:  # the revocation's notification lands between the two reads
        taken = real()
        tokens.forget_agent(laptop.id)
        return taken

    monkeypatch.setattr(tokens, "generation", revoked_meanwhile)
    assert laptop.post("/api/agent/next_run", json={}).json() == IDLE_RUN  # its row read live
    assert len(tokens) == 0  # but what was read may predate the revocation: not remembered
    monkeypatch.undo()
    assert laptop.post("/api/agent/next_run", json={}).json() == IDLE_RUN
    assert len(tokens) == 1


def test_a_failed_check_answers_each_poll_alone(app: FastAPI, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    run_a = _queue_run(world, world.user_a, "A")
    assert world.agent_a.post("/api/agent/poll_commands").json() == IDLE_COMMANDS

    def broken(*_: Any) -> list[Verdict]:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(idle_check, "check", broken)
    assert world.agent_a.post("/api/agent/next_run", json={}).json()["run"]["run_id"] == run_a
    assert world.agent_a.post("/api/agent/next_run", json={}).json() == IDLE_RUN
    assert world.agent_a.post("/api/agent/poll_commands").json() == IDLE_COMMANDS


def test_a_check_whose_connection_was_lost_falls_back_then_reconnects(
    app: FastAPI, world: World, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL: a server-side end of the kept connection")
    agent, batcher = world.agent_a, app.state.poll_batcher
    assert agent.post("/api/agent/poll_commands").json() == IDLE_COMMANDS  # the batcher keeps its connection
    assert batcher.checked == 1
    pids = [c.connection.dbapi_connection.info.backend_pid for c in batcher._idle_connections]
    with app.state.e3.engine.connect() as conn:  # as a PostgreSQL restart or a failover would
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"), {"pids": pids})
    assert agent.post("/api/agent/poll_commands").json() == IDLE_COMMANDS  # answered alone
    assert batcher.checked == 1
    assert agent.post("/api/agent/next_run", json={}).json() == IDLE_RUN  # checked on a new connection
    assert batcher.checked == 2


def _verdicts(app: FastAPI, *polls: Poll) -> list[Verdict]:
    state = app.state.e3
    with state.engine.begin() as conn:
        return idle_check.check(conn, list(polls), state.clock.now())


def test_the_check_finds_what_the_handlers_would_act_on(app: FastAPI, world: World, clock: FakeClock) -> None:
    a, b = world.agent_a.id, world.agent_b.id
    ta, tb = world.tenant_a["id"], world.tenant_b["id"]
    state = app.state.e3
    done = _queue_run(world, world.user_b, "B")  # a finished run of B first: no run's id is its agent's
    with state.sessions() as s:
        s.execute(update(Run).where(Run.id == done).values(status="success"))
        s.commit()
    assert _queue_run(world, world.user_a, "A") != a  # a queued backup for A
    assert _verdicts(
        app,
        Poll(a, ta, True, False),
        Poll(a, ta, True, False, RunKind.BACKUP),
        Poll(a, ta, False, False, RunKind.RESTORE),
        Poll(a, ta, False, True),
        Poll(b, tb, False, False),
    ) == [Verdict.WORK, Verdict.WORK, Verdict.IDLE, Verdict.IDLE, Verdict.IDLE]
    with state.sessions() as s:
        s.execute(update(Agent).where(Agent.id == a).values(paused=True))  # no new backups
        s.add(Command(tenant_id=tb, agent_id=b, type="list_disks", created_at=clock.now()))
        s.commit()
        version_b = s.scalar(select(Agent.agent_version).where(Agent.id == b))
    same, other = NextRunRequest(agent_version=version_b), NextRunRequest(agent_version=f"{version_b}.1")
    assert _verdicts(
        app,
        Poll(a, ta, False, False),
        Poll(b, tb, False, True),
        Poll(b, tb, False, False, None, same),
        Poll(b, tb, False, False, None, other),
    ) == [Verdict.IDLE, Verdict.WORK, Verdict.IDLE, Verdict.WORK]
    with state.sessions() as s:
        seen_before = s.scalar(select(Agent.last_seen_at).where(Agent.id == b))
    now = clock.advance(seconds=30)
    _verdicts(app, Poll(a, ta, True, True), Poll(b, tb, False, True))  # only A's contact is due
    with state.sessions() as s:
        seen = {row.id: row.last_seen_at for row in s.execute(select(Agent.id, Agent.last_seen_at))}
        s.execute(update(Agent).where(Agent.id == b).values(revoked=True))
        s.commit()
    assert seen[a] is not None and seen[a].replace(tzinfo=now.tzinfo) == now
    assert seen[b] == seen_before
    assert _verdicts(app, Poll(b, tb, True, True), Poll(b, tb, False, False), Poll(a, ta, False, True)) == [
        Verdict.REFUSED,
        Verdict.REFUSED,
        Verdict.IDLE,
    ]
