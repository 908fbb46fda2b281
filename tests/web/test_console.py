"""The MSP console (#25): fleet health on the overview (bug 4), agents online only once they
call in (bug 5), restores offered exactly for snapshots that exist (bug 8), retention and the
per-repository prune/check schedule (bug 1) on the job page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import FastAPI

from e3backup.server.db.models import Agent, Command, Run
from tests.server.conftest import FakeClock, World, enroll, login
from tests.web.conftest import form_post, page, text_of


def _add_runs(app: FastAPI, job: dict[str, Any], statuses: list[str], **fields: Any) -> list[int]:
    state = app.state.e3
    now = state.clock.now()
    ids = []
    with state.sessions() as session:
        for status in statuses:
            values = {"started_at": now - timedelta(minutes=5), "finished_at": now, **fields}
            run = Run(tenant_id=job["tenant_id"], job_id=job["id"], agent_id=job["agent_id"], kind="backup",
                      trigger="schedule", status=status, created_at=now, **values)
            session.add(run)
            session.flush()
            ids.append(run.id)
        session.commit()
    return ids


def _seen_now(app: FastAPI) -> None:
    state = app.state.e3
    with state.sessions() as session:
        for agent in session.query(Agent):
            agent.last_seen_at = state.clock.now()
        session.commit()


def test_overview_counts_every_failure_and_sorts_attention_first(app: FastAPI, world: World) -> None:
    busy = world.job(name="Busy")
    failing = [world.job(owner=world.user_b, name=f"Globex {i}") for i in range(6)]
    for job in failing:
        _add_runs(app, job, ["failed"])
    _add_runs(app, busy, ["success"] * 20)  # the newest ten runs are all successes
    _seen_now(app)
    html = page(world.admin, "/")
    text = text_of(html)
    assert "6 failed runs in 24 h" in text, text[:2000]
    fleet = html[html.index('id="fleet"'):]
    assert fleet.index("gx-srv") < fleet.index("acme-pc")
    assert "last run failed" in text_of(fleet)
    tenants = html[html.index('id="customers"'):]
    assert tenants.index("Globex") < tenants.index("Acme")


def test_rpo_missed_is_flagged(app: FastAPI, world: World, clock: FakeClock) -> None:
    job = world.job(name="Nightly", policy={"rpo_hours": 6})
    _add_runs(app, job, ["success"])
    clock.advance(hours=7)
    _seen_now(app)
    text = text_of(page(world.user_a, "/"))
    assert "1 jobs past their RPO" in text and "past RPO 6 h" in text


def test_an_agent_is_offline_until_its_process_calls_in(world: World) -> None:
    bot = enroll(world.client, world.enroll_a, "fresh-pc", os="linux")
    assert world.admin.get(f"/api/agents/{bot.id}").json()["online"] is False
    assert "fresh-pc" in text_of(page(world.admin, "/"))  # listed, as never connected
    assert bot.post("/api/agent/next_run").status_code == 200
    assert world.admin.get(f"/api/agents/{bot.id}").json()["online"] is True


def test_restore_is_offered_only_for_snapshots_that_exist_even_after_the_job_is_deleted(
    app: FastAPI, world: World
) -> None:
    job = world.job(name="Docs")
    old, kept = _add_runs(app, job, ["success", "success"])
    with app.state.e3.sessions() as session:
        session.get(Run, old).snapshot_id = "a" * 64
        session.get(Run, kept).snapshot_id = "b" * 64
        session.commit()
    (running,) = _add_runs(app, job, ["running"], finished_at=None)
    r = world.agent_a.post("/api/agent/update_run", json={
        "run_id": running, "status": "success", "snapshot_id": "c" * 64, "snapshots_removed": ["a" * 64]})
    assert r.status_code == 200, r.text
    offered = '<h2 id="restore-title">Restore</h2>'
    assert offered not in page(world.user_a, f"/runs/{old}")
    assert offered in page(world.user_a, f"/runs/{kept}")

    assert world.user_a.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert world.user_a.get(f"/api/jobs/{job['id']}").status_code == 404
    assert [j["id"] for j in world.user_a.get("/api/jobs").json()] == []
    html = page(world.user_a, f"/runs/{kept}")
    assert offered in html and "its snapshots are kept" in html
    r = world.user_a.post(f"/api/agents/{world.agent_a.id}/commands", json={
        "type": "restore", "job_id": job["id"], "payload": {"snapshot_id": "b" * 64, "target_path": "D:\\Restore"}})
    assert r.status_code == 201, r.text
    with app.state.e3.sessions() as session:
        cmd = session.query(Command).one()
        assert (cmd.type, cmd.payload["snapshot_id"]) == ("restore", "b" * 64)


def test_prune_and_check_run_on_a_schedule_per_repository(app: FastAPI, world: World, clock: FakeClock) -> None:
    # direct mode: an agent of the repository runs it (gateway mode: the server's worker, tests/gateway)
    shared = world.job(name="One", retention={"keep_last": 3}, storage_mode="direct")
    world.job(name="Two", storage_mode="direct")  # same destination: the same repository
    other = world.job(name="Three", destination={**_dest(), "bucket": "elsewhere"}, storage_mode="direct")
    scheduler = app.state.scheduler
    assert scheduler.tick() == []
    clock.advance(days=7, minutes=1)
    runs = scheduler.tick()
    assert sorted((r.kind, r.restore["mode"], r.restore["forget"]) for r in runs) == [
        ("maintenance", "quick", False)
    ] * 2
    assert {r.job_id for r in runs} in ({shared["id"] + 1, other["id"]}, {shared["id"], other["id"]})
    assert scheduler.tick() == []  # one at a time per repository, and not due again for a week
    done = next(r for r in runs if r.job_id != other["id"])
    r = world.agent_a.post("/api/agent/update_run", json={"run_id": done.id, "status": "success"})
    assert r.status_code == 200, r.text
    text = text_of(page(login(world.client, "alice@acme.example"), f"/jobs/{shared['id']}"))
    assert "keep 3 latest snapshots; applied after every successful backup" in text
    assert "Prune last never" not in text and "Check last never" in text
    clock.advance(days=21)
    # the shared repository's check is due; the other's first prune has not run yet: it waits
    assert [(r.job_id, r.restore["mode"]) for r in scheduler.tick()] == [(done.job_id, "full")]


def _dest() -> dict[str, Any]:
    from tests.server.conftest import s3_destination

    return s3_destination()


def test_a_failed_job_form_lists_every_problem_by_name_and_never_echoes_secrets(world: World) -> None:
    r = form_post(world.user_a, "/jobs/new", {})
    assert r.status_code == 422
    summary = text_of(r.text[r.text.index('id="form-errors"'):r.text.index("</ul>", r.text.index('id="form-errors"'))])
    assert "Job name: Required." in summary and "Bucket: " in summary and "S3 endpoint: Required." in summary
    assert "Secret access key: Required." in summary and "Repository password: Required." in summary
    form = {"name": "x", "agent_id": str(world.agent_a.id), "engine": "files", "source_paths": "C:\\Data",
            "destination.type": "s3", "destination.secret_access_key": "s3-SECRET-typed-4711",
            "destination.repository_password": "repo-PASSWORD-typed-0815", "schedule.cron": "every day"}
    r = form_post(world.user_a, "/jobs/new", form)
    assert r.status_code == 422
    assert "s3-SECRET-typed-4711" not in r.text and "repo-PASSWORD-typed-0815" not in r.text
    summary = text_of(r.text[r.text.index('id="form-errors"'):r.text.index("</ul>", r.text.index('id="form-errors"'))])
    # the bucket and the schedule in one submit (they came one per submit before)
    assert "Bucket: " in summary and "Schedule: not a valid 5-field cron expression" in summary
    assert 'tabindex="-1" data-error-summary' in r.text


def test_alerts_page_adds_recipients_without_echoing_the_secret(world: World) -> None:
    r = form_post(world.user_a, "/alerts/channels", {"kind": "webhook", "target": "https://hooks.example/x",
                                                      "secret": "short"})
    assert r.status_code == 422 and "short" not in r.text.split('id="channel-form"')[1].split("</form>")[0]
    assert 'data-error-summary' in r.text and "Secret: " in text_of(r.text)
    r = form_post(world.user_a, "/alerts/channels", {"kind": "email", "target": "ops@acme.example",
                                                      "summary": "weekly"})
    assert r.status_code == 303, r.text
    text = text_of(page(world.user_a, "/alerts"))
    assert "ops@acme.example" in text and "weekly summary" in text
    assert "ops@acme.example" not in text_of(page(world.user_b, "/alerts"))


def test_audit_log_page_pages_and_filters(world: World) -> None:
    for i in range(3):
        world.job(name=f"Job {i}")
    html = page(world.user_a, "/audit?action=job.")
    assert text_of(html).count("job.create") == 3 and "alice@acme.example" in html
    assert world.user_a.get("/audit?action=job.", headers={"Accept": "text/html"}).status_code == 200
    assert "job.create" not in text_of(page(world.user_b, "/audit"))
    assert page(world.admin, "/static/favicon.svg").startswith("<svg")
    assert 'rel="icon" href="/static/favicon.svg"' in page(world.user_a, "/")


def test_status_badges_have_a_contrast_of_at_least_4_5() -> None:
    """WCAG 2.1 relative luminance, read from the stylesheet as the browser gets it."""
    import re
    from pathlib import Path

    import e3backup.server.web as web

    css = (Path(web.__file__).parent / "static" / "app.css").read_text()
    colors = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", css))

    def luminance(hex_color: str) -> float:
        rgb = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    checked = 0
    badge = r"(\.status-[a-z, .-]+)\{\s*background:\s*(#[0-9a-fA-F]{6});\s*color:\s*var\(--([a-z]+)\)"
    for rule in re.findall(badge, css):
        selector, background, var = rule
        hi, lo = sorted((luminance(background), luminance(colors[var])), reverse=True)
        assert (hi + 0.05) / (lo + 0.05) >= 4.5, selector
        checked += 1
    assert checked >= 4


def test_usage_page_lists_repositories_and_says_why_one_is_out_of_reach(world: World) -> None:
    world.job(name="Docs", destination={"type": "local", "path": "/srv/backups/acme",
                                        "repository_password": "repo-PASSWORD-do-not-leak-0815"})
    html = page(world.user_a, "/usage")
    assert "local /srv/backups/acme" in html and "Docs" in html
    assert "out of the server&#39;s reach" in html  # a folder on the agent machine
    r = world.user_a.get("/usage.csv", headers={"Accept": "text/html"})
    assert r.text.splitlines()[0].startswith("tenant,repository,jobs,protected_bytes,stored_bytes")
    assert "Docs" not in page(world.user_b, "/usage")
