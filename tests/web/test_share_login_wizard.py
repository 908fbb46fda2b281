"""The wizard's network share login (issue 18): sealed with the destination's secrets, never shown
again, kept when an edit leaves it empty, removed on request, and handed to the agent's run."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy.orm import Session

from e3backup.server.db.models import Job
from e3backup.server.services.jobs import share_credentials
from tests.server.conftest import World
from tests.web.conftest import form_post, page
from tests.web.test_controls import _job_form

PASSWORD = "share-PASSWORD-do-not-leak-2024"


def _run_assignment(world: World, job_id: int) -> dict[str, Any]:
    r = world.user_a.post(f"/api/jobs/{job_id}/run")
    assert r.status_code == 201, r.text
    r = world.agent_a.post("/api/agent/next_run")
    assert r.status_code == 200, r.text
    run: dict[str, Any] = r.json()["run"]
    return run


def _sealed(app: FastAPI, job_id: int) -> dict[str, str] | None:
    """What the next run assignment would carry (``runs.py`` calls this)."""
    e3 = app.state.e3
    with Session(e3.engine) as db:
        job = db.get(Job, job_id)
        assert job is not None
        return share_credentials(e3.box, job)


def test_the_share_login_reaches_the_agent_kept_on_edit_and_removed(app: FastAPI, world: World) -> None:
    form = _job_form(world, source_paths="\\\\nas\\finance",
                     **{"share_credentials.username": "CORP\\backup", "share_credentials.password": PASSWORD})
    r = form_post(world.user_a, "/jobs/new", form)
    assert r.status_code == 303, r.text
    job_id = int(r.headers["location"].split("/")[2].split("?")[0])
    assert PASSWORD not in world.user_a.get(f"/api/jobs/{job_id}").text
    edit = page(world.user_a, f"/jobs/{job_id}/edit")
    assert PASSWORD not in edit and 'name="share_credentials.username"' in edit
    run = _run_assignment(world, job_id)
    assert run["share_credentials"] == {"username": "CORP\\backup", "password": PASSWORD}

    # an edit that leaves the login empty keeps it; "remove" drops it
    kept = _job_form(world, source_paths="\\\\nas\\finance", name="Finance")
    kept.pop("destination.secret_access_key")
    kept.pop("destination.repository_password")
    r = form_post(world.user_a, f"/jobs/{job_id}/edit", kept)
    assert r.status_code == 303, r.text
    assert _sealed(app, job_id) == {"username": "CORP\\backup", "password": PASSWORD}
    gone = {**kept, "share_credentials.remove": "on"}
    assert form_post(world.user_a, f"/jobs/{job_id}/edit", gone).status_code == 303
    assert _sealed(app, job_id) is None


def test_a_share_password_without_a_user_is_named_and_not_echoed(world: World) -> None:
    form = _job_form(world, source_paths="\\\\nas\\finance", **{"share_credentials.password": PASSWORD})
    bad = form_post(world.user_a, "/jobs/new", form)
    assert bad.status_code == 422
    assert 'id="share_credentials-username-error">Required with a share password.' in bad.text
    assert PASSWORD not in bad.text
