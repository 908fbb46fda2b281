"""History at scale (#25): paging through 500 runs with filters, the CSV of the same, the API's
paging and date range, events across runs, and the run page's counts."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from fastapi import FastAPI

from e3backup.server.db.models import Run
from tests.server.conftest import World
from tests.web.conftest import HTML, page, text_of


def _fill(app: FastAPI, world: World, n: int) -> dict[str, int]:
    a = world.job(name="Docs")
    b = world.job(owner=world.user_b, name="Mail")
    state = app.state.e3
    start = state.clock.now() - timedelta(days=10)
    with state.sessions() as session:
        for i in range(n):
            job = a if i % 2 == 0 else b
            when = start + timedelta(minutes=30 * i)
            session.add(Run(tenant_id=job["tenant_id"], job_id=job["id"], agent_id=job["agent_id"], kind="backup",
                            trigger="schedule", status="failed" if i % 5 == 0 else "success", created_at=when,
                            started_at=when, finished_at=when + timedelta(minutes=3), bytes_processed=1000 * i,
                            error_summary="=cmd|' /C calc'!A0" if i == 0 else None))
        session.commit()
    return {"a": a["id"], "b": b["id"]}


def test_paging_filters_and_csv_over_500_runs(app: FastAPI, world: World) -> None:
    jobs = _fill(app, world, 500)
    first = page(world.admin, "/runs")
    assert "500 runs: 1\u201350 shown" in text_of(first) and 'rel="next"' in first
    assert "<th scope=\"col\">Tenant</th>" in first and "Globex" in first
    seen: set[str] = set()
    url, pages = "/runs", 0
    while True:  # every page, by its own links
        html = page(world.admin, url)
        pages += 1
        seen.update(part.split('"')[0] for part in html.split('<a href="/runs/')[1:])
        if 'rel="next"' not in html:
            break
        url = html.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert pages == 10 and "451\u2013500 shown" in text_of(html)
    assert seen == {str(i) for i in range(1, 501)}  # each run once, none skipped
    filtered = text_of(page(world.admin, f"/runs?status=failed&job_id={jobs['a']}"))
    assert "50 runs." in filtered  # i % 5 == 0 and even: every tenth of 500
    r = world.admin.get("/runs.csv", params={"status": "failed", "job_id": jobs["a"]}, headers=HTML)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert r.headers["content-type"].startswith("text/csv") and len(rows) == 50
    assert {row["tenant"] for row in rows} == {"Acme"} and {row["job"] for row in rows} == {"Docs"}
    assert rows[-1]["error"].startswith("'=")  # no spreadsheet formula
    assert len(list(csv.DictReader(io.StringIO(world.user_b.get("/runs.csv", headers=HTML).text)))) == 250

    api = world.admin.get("/api/runs", params={"offset": 100, "limit": 100}).json()
    assert len(api) == 100 and api[0]["id"] == 400
    day = (app.state.e3.clock.now() - timedelta(days=10)).date().isoformat()
    # runs every 30 min from 10:00 that day: 4 before noon, 28 through the end of the day
    assert len(world.admin.get("/api/runs", params={"until": f"{day}T12:00:00", "limit": 1000}).json()) == 4
    assert "28 runs." in text_of(page(world.admin, f"/runs?until={day}"))


def test_run_page_shows_counts_and_local_time(world: World) -> None:
    job = world.job()
    run = world.user_a.post(f"/api/jobs/{job['id']}/run").json()["id"]
    world.agent_a.post("/api/agent/next_run")
    world.agent_a.post("/api/agent/update_run", json={"run_id": run, "status": "success", "summary": {
        "files_new": 3, "files_changed": 2, "files_unmodified": 1000, "bytes_read": 5_000_000,
        "bytes_added": 1_000_000, "bytes_stored": 400_000}})
    text = text_of(page(world.user_a, f"/runs/{run}"))
    assert "3 new, 2 changed, 1,000 unchanged" in text
    assert "Bytes read 4.8 MiB" in text and "Deduplicated 3.8 MiB" in text and "390.6 KiB" in text
    assert '<time datetime="' in page(world.user_a, "/runs")
    events = world.user_a.get("/api/runs/events/all", params={"level": "error"}).json()
    assert events == []


def test_events_page_filters_pages_and_exports_csv(app: FastAPI, world: World) -> None:
    from e3backup.server.db.models import RunEvent

    jobs = _fill(app, world, 60)
    state = app.state.e3
    with state.sessions() as session:
        for run in session.query(Run).order_by(Run.id):
            for seq, level in enumerate(("info", "warning" if run.id % 3 == 0 else "info"), start=1):
                session.add(RunEvent(run_id=run.id, seq=seq, ts=run.created_at, received_at=run.created_at,
                                     code="SOURCE_UNREADABLE" if level == "warning" else "BACKUP_STARTED",
                                     level=level, message=f"=run {run.id} event {seq}"))
        session.commit()
    first = page(world.admin, "/events")
    assert "120 events: 1\u201350 shown" in text_of(first) and 'rel="next"' in first
    assert "<th scope=\"col\">Tenant</th>" in first
    third = page(world.admin, "/events?offset=100")
    assert "101\u2013120 shown" in text_of(third) and 'rel="next"' not in third
    warnings = text_of(page(world.admin, f"/events?level=warning&job_id={jobs['a']}"))
    # runs 1..60, job a has the odd ids; warnings on multiples of 3: 3, 9, ..., 57
    assert "10 events." in warnings and "BACKUP_STARTED" not in warnings
    r = world.admin.get("/events.csv", params={"level": "warning", "job_id": jobs["a"]}, headers=HTML)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert r.headers["content-type"].startswith("text/csv") and len(rows) == 10
    assert {(row["tenant"], row["job"], row["code"]) for row in rows} == {("Acme", "Docs", "SOURCE_UNREADABLE")}
    assert rows[0]["run_id"] == "57" and rows[0]["message"] == "'=run 57 event 2"  # no spreadsheet formula
    assert rows[0]["time_utc"].endswith("Z")
    # a tenant's user sees its own tenant's events only
    own = list(csv.DictReader(io.StringIO(world.user_b.get("/events.csv", headers=HTML).text)))
    assert len(own) == 60 and {row["tenant"] for row in own} == {"Globex"}
    assert "Docs" not in page(world.user_b, "/events")
