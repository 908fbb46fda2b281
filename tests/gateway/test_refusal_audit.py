"""Refused gateway requests reach the audit log, one entry per source and window with the count
of its attempts (a flood adds no rows), and show on the dashboard's audit page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from e3backup.server.db.models import AuditEvent
from e3backup.server.services import gateway_audit, users
from tests.gateway.conftest import GatewayWorld
from tests.helpers import PASSWORD

NAME = "ab" * 32


def _entries(w: GatewayWorld, job_id: int) -> list[AuditEvent]:
    with w.state.sessions() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action.startswith("gateway."),
                                                       AuditEvent.target_id == job_id).order_by(AuditEvent.id)))


def test_refusals_and_wrong_tokens_are_audited_once_per_source_with_their_count(gateway_world: GatewayWorld) -> None:
    w = gateway_world
    tenant, elsewhere = w.tenant(), w.tenant()
    actor, other = w.agent(tenant), w.agent(elsewhere, "pc2")
    job_id, _ = w.local_job(actor, "audited")
    recovery = w.recovery_token(job_id)
    with httpx.Client(base_url=f"{w.url}/gateway/job-{job_id}") as c:
        for _ in range(40):
            assert c.delete(f"/snapshots/{NAME}", auth=("e3backup", actor.token)).status_code == 403
        assert c.delete(f"/keys/{NAME}", auth=("e3backup", actor.token)).status_code == 403
        assert c.delete(f"/locks/{NAME}", auth=("e3backup", recovery)).status_code == 403
        for _ in range(25):
            assert c.get("/config", auth=("e3backup", other.token)).status_code == 404
        for _ in range(5):
            assert c.get("/snapshots/", auth=("e3backup", "e3g_" + "x" * 43)).status_code == 404
        assert c.get("/config").status_code == 401  # no token at all: every client's first knock, not recorded
    rows = _entries(w, job_id)
    refused = {r.actor: r for r in rows if r.action == gateway_audit.REFUSED}
    wrong = {r.actor: r for r in rows if r.action == gateway_audit.WRONG_TOKEN}
    assert len(rows) == 4
    mine = refused[f"agent {actor.agent_id}"]
    assert (mine.details["attempts"], mine.tenant_id, mine.ip, mine.target_type) == (41, tenant, "127.0.0.1",
                                                                                     "repository")
    assert mine.details["request"] == f"DELETE snapshots/{NAME}" and "append-only" in mine.details["reason"]
    console = next(r for who, r in refused.items() if who.startswith("recovery session of run"))
    assert console.details["attempts"] == 1 and "read-only" in console.details["reason"]
    assert (wrong[f"agent {other.agent_id}"].details["attempts"], wrong[f"agent {other.agent_id}"].tenant_id) == (
        25, elsewhere)
    assert (wrong["unknown token"].details["attempts"], wrong["unknown token"].tenant_id) == (5, None)
    assert not any(actor.token in str(r.details) or other.token in str(r.details) for r in rows)

    with w.state.sessions() as s:  # the MSP's audit page shows them with their counts
        now = w.state.clock.now()
        admin = users.create_user(s, w.state.passwords, now, "audit-admin@msp.example", PASSWORD, True, None)
        _, cookie = users.start_session(s, admin, now, 1)
        s.commit()
    page = httpx.get(f"{w.url}/audit", params={"action": "gateway."}, headers={
        "Cookie": f"e3_session={cookie}", "Accept": "text/html"})
    assert page.status_code == 200, page.text[:300]
    assert "gateway.refused" in page.text and "gateway.wrong_token" in page.text
    assert "attempts: 41" in page.text and "attempts: 25" in page.text and f"agent {actor.agent_id}" in page.text


def test_a_flood_from_many_sources_adds_at_most_cap_plus_one_entries_per_window(gateway_world: GatewayWorld) -> None:
    w = gateway_world
    job_id, _ = w.local_job(w.agent(w.tenant()), "flooded")
    later = datetime(2030, 1, 1, tzinfo=UTC)  # a window of its own
    sources = gateway_audit.CAP + 30
    with w.state.sessions() as s:
        for i in range(sources):
            for _ in range(2):
                gateway_audit.note(s, later, gateway_audit.WRONG_TOKEN, who="unknown token", tenant_id=None,
                                   job_id=job_id, ip=f"10.0.{i // 200}.{i % 200}", details={"reason": "no right"})
        s.commit()
    rows = _entries(w, job_id)
    with w.state.sessions() as s:
        many = list(s.scalars(select(AuditEvent).where(AuditEvent.actor == gateway_audit.MANY,
                                                       AuditEvent.ts >= later)))
    assert len(rows) == gateway_audit.CAP and len(many) == 1
    assert sum(r.details["attempts"] for r in rows) == 2 * gateway_audit.CAP
    assert many[0].details["attempts"] == 2 * 30  # every attempt is counted, on one entry
    with w.state.sessions() as s:  # the next window starts new entries
        gateway_audit.note(s, later + gateway_audit.WINDOW + timedelta(seconds=1), gateway_audit.WRONG_TOKEN,
                           who="unknown token", tenant_id=None, job_id=job_id, ip="10.0.0.0",
                           details={"reason": "no right"})
        s.commit()
    assert len(_entries(w, job_id)) == gateway_audit.CAP + 1
