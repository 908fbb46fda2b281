"""Alerts end to end on the server: a failed run raises one email (through a real SMTP server)
and one signed webhook (to a real HTTP server, retried with back-off), once per incident, and
both say when it cleared; offline agents, RPO and the daily summary; per-tenant recipients."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from e3backup.server.services.alert_delivery import verify
from tests.plugins.alert_receivers import Inbox, WebhookReceiver, smtp_inbox, webhook_receiver  # noqa: F401
from tests.server.conftest import FakeClock, World

HOOK_SECRET = "whsec-0123456789abcdef-test"


@pytest.fixture
def database_url(tmp_path: Path, _sqlite_template: Path) -> Iterator[str]:
    shutil.copyfile(_sqlite_template, tmp_path / "server.db")
    yield f"sqlite:///{tmp_path / 'server.db'}"


@pytest.fixture
def settings_overrides(smtp_inbox: Inbox) -> dict[str, Any]:  # noqa: F811
    return {"smtp_host": smtp_inbox.host, "smtp_port": smtp_inbox.port, "smtp_sender": "alerts@msp.example",
            "alert_offline_minutes": 30}


def _channel(actor: Any, **body: Any) -> dict[str, Any]:
    r = actor.post("/api/alerts/channels", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _finish(world: World, job: dict[str, Any], status: str, error: str = "") -> int:
    run = world.user_a.post(f"/api/jobs/{job['id']}/run").json()["id"]
    assert world.agent_a.post("/api/agent/next_run").json()["run"]["run_id"] == run
    body: dict[str, Any] = {"run_id": run, "status": status}
    if error:
        body["error_summary"] = error
    r = world.agent_a.post("/api/agent/update_run", json=body)
    assert r.status_code == 200, r.text
    return int(run)


def test_a_failed_run_alerts_once_by_email_and_signed_webhook_then_clears(
    app: FastAPI, world: World, clock: FakeClock, smtp_inbox: Inbox, webhook_receiver: WebhookReceiver  # noqa: F811
) -> None:
    _channel(world.user_a, kind="email", target="oncall@acme.example")
    _channel(world.admin, kind="webhook", target=webhook_receiver.url, secret=HOOK_SECRET)
    job = world.job(name="Docs")
    webhook_receiver.answers = [500]  # the receiver is down for the first attempt
    _finish(world, job, "failed", "disk full")
    worker = app.state.alerts
    assert worker.deliver_due() == 1  # the email; the webhook failed and waits
    (rcpts, msg), = smtp_inbox.messages
    assert rcpts == ["oncall@acme.example"] and msg["From"] == "alerts@msp.example"
    assert "ALERT" in msg["Subject"] and "Docs failed: disk full" in msg["Subject"]
    assert worker.deliver_due() == 0  # back-off: not yet
    clock.advance(seconds=31)
    assert worker.deliver_due() == 1
    first, second = webhook_receiver.calls
    assert first.headers["x-e3backup-delivery"] == second.headers["x-e3backup-delivery"]
    assert verify(HOOK_SECRET, second.headers["x-e3backup-signature"], second.body)
    assert not verify("another-secret-0000000", second.headers["x-e3backup-signature"], second.body)
    sent = json.loads(second.body)
    assert (sent["event"], sent["rule"], sent["tenant"], sent["details"]["error"]) == (
        "opened", "run_failed", "Acme", "disk full")

    _finish(world, job, "failed", "disk still full")  # the same incident: nothing new
    assert worker.deliver_due() == 0 and len(smtp_inbox.messages) == 1

    _finish(world, job, "success")
    assert worker.deliver_due() == 2
    assert "CLEARED" in smtp_inbox.messages[-1][1]["Subject"]
    cleared = json.loads(webhook_receiver.calls[-1].body)
    assert cleared["event"] == "cleared" and cleared["cleared_at"] and cleared["incident_id"] == sent["incident_id"]
    incidents = world.user_a.get("/api/alerts/incidents").json()
    assert [(i["rule"], i["cleared_at"] is not None) for i in incidents] == [("run_failed", True)]


def test_alerts_go_to_the_tenants_own_recipients(
    app: FastAPI, world: World, smtp_inbox: Inbox  # noqa: F811
) -> None:
    _channel(world.user_a, kind="email", target="a@acme.example", rules=["run_failed"])
    _channel(world.user_b, kind="email", target="b@globex.example")
    assert world.user_b.get("/api/alerts/channels").json()[0]["target"] == "b@globex.example"
    assert len(world.admin.get("/api/alerts/channels").json()) == 2
    r = world.user_b.post("/api/alerts/channels", json={"kind": "email", "target": "x@y.example",
                                                         "tenant_id": world.tenant_a["id"]})
    assert r.status_code == 422
    r = world.user_a.post("/api/alerts/channels", json={"kind": "email", "target": "q@acme.example",
                                                         "rules": ["disk_on_fire"]})
    assert r.status_code == 422 and "rules" in r.text  # an unknown rule is refused, not ignored
    r = world.user_a.post("/api/alerts/channels", json={"kind": "email", "target": "q@acme.example",
                                                         "rules": ["storage_quota"]})
    assert r.status_code == 201, r.text  # quotas are built (services.quotas): only their alerts
    _finish(world, world.job(name="Docs"), "warning", "1 file unreadable")  # not a rule of a@
    _finish(world, world.job(name="Mail"), "failed", "boom")
    app.state.alerts.deliver_due()
    assert [r for r, _ in smtp_inbox.messages] == [["a@acme.example"]]


def test_offline_agent_rpo_and_daily_summary(
    app: FastAPI, world: World, clock: FakeClock, smtp_inbox: Inbox  # noqa: F811
) -> None:
    _channel(world.user_a, kind="email", target="oncall@acme.example", rules=["agent_offline", "rpo_missed"],
             summary="daily")
    job = world.job(name="Nightly", policy={"rpo_hours": 2})
    _finish(world, job, "success")
    worker = app.state.alerts
    worker.tick()
    assert smtp_inbox.messages == []
    clock.advance(minutes=40)  # silent for 40 min: offline for more than 30
    worker.tick()
    offline = "Agent acme-pc is offline (last seen 2026-03-02 10:00 UTC)"
    assert [s.split(": ", 1)[1] for s in smtp_inbox.subjects()] == [offline]
    clock.advance(hours=2)
    worker.tick()
    assert "no successful backup within 2 h" in smtp_inbox.subjects()[-1]
    world.agent_a.post("/api/agent/next_run")  # back online
    worker.tick()
    assert "CLEARED: Agent acme-pc is offline" in smtp_inbox.subjects()[-1]
    clock.advance(hours=20)  # past 07:00 the next day: the summary
    worker.tick()
    summary = smtp_inbox.messages[-1][1]
    assert "Daily summary for Acme" in summary["Subject"] and "1 jobs past their RPO" in summary["Subject"]
    html = summary.get_body(("html",)).get_content()
    assert "<table" in html and "acme-pc" in html and "Nightly" in html
