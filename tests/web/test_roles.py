"""The dashboard reflects the user's role: controls a role may not use are not shown, and the
forms behind them refuse it anyway (the same checks as the API)."""

from __future__ import annotations

from fastapi import FastAPI

from e3backup.server.security.roles import Role
from tests.server.conftest import World
from tests.server.test_authorization import role_user
from tests.web.conftest import HTML, form_post, page


def test_read_only_users_see_no_controls_and_forms_refuse_them(app: FastAPI, world: World) -> None:
    job = world.job()
    reader = role_user(app, world, "rita@acme.example", world.tenant_a, Role.READ_ONLY)
    assert ">Run now</button>" not in page(reader, f"/jobs/{job['id']}")
    assert "New backup job" not in page(reader, "/jobs")
    agents = page(reader, "/agents")
    assert "Show the enrollment command" not in agents and "An administrator of Acme" in agents
    assert "read-only" in agents  # the role badge
    assert reader.get("/jobs/new", headers=HTML).status_code == 403
    assert form_post(reader, f"/jobs/{job['id']}/run", {}).status_code == 403
    assert form_post(reader, "/enrollment-token", {}).status_code == 403
    assert world.user_a.get(f"/api/jobs/{job['id']}/history").json() == []  # nothing was queued


def test_operators_run_and_restore_but_do_not_create_jobs(app: FastAPI, world: World) -> None:
    job = world.job()
    operator = role_user(app, world, "olga@acme.example", world.tenant_a, Role.OPERATOR)
    assert ">Run now</button>" in page(operator, f"/jobs/{job['id']}")
    assert "New backup job" not in page(operator, "/jobs")
    r = form_post(operator, f"/jobs/{job['id']}/run", {})
    assert r.status_code == 303 and r.headers["location"].startswith("/runs/")
    assert form_post(operator, "/jobs/new", {"name": "x"}).status_code == 403
    # the restore form is on a finished backup's page (offering the folders the agent reported)
    world.agent_a.post("/api/agent/report_disks", json={"restore_roots": ["D:\\Restore"]})
    run_id = int(r.headers["location"].rsplit("/", 1)[1])
    world.agent_a.post("/api/agent/next_run")
    world.agent_a.post("/api/agent/update_run", json={"run_id": run_id, "status": "success", "snapshot_id": "ab" * 32})
    assert "Restore this snapshot" in page(operator, f"/runs/{run_id}")
    reader = role_user(app, world, "rita@acme.example", world.tenant_a, Role.READ_ONLY)
    assert "Restore this snapshot" not in page(reader, f"/runs/{run_id}")
    assert form_post(reader, f"/runs/{run_id}/restore", {"target_path": "/srv/r"}).status_code == 403


def test_administrators_see_every_control(world: World) -> None:
    job = world.job()
    assert ">Run now</button>" in page(world.user_a, f"/jobs/{job['id']}")
    assert "New backup job" in page(world.user_a, "/jobs")
    assert "Show the enrollment command" in page(world.user_a, "/agents")
