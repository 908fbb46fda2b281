"""The agent's own allow-lists: backup sources (``allowed_sources``, default anything) and local
repositories (``local_destination_roots``). Enforced by the agent whatever the server sends: a
job a tenant user points at /etc, or a local repository over a system directory, fails with a
``RUN_REFUSED`` event naming the field, before anything is read or written."""

from __future__ import annotations

import os
from pathlib import Path

from tests.agent.conftest import REPO_PASSWORD, Harness


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("hello\n" * 100)
    return root


def _refused(harness: Harness, run_id: int) -> dict[str, object]:
    events = [e for e in harness.events(run_id) if e["code"] == "RUN_REFUSED"]
    assert len(events) == 1, harness.events(run_id)
    return dict(events[0])


def test_sources_outside_allowed_sources_are_refused(harness: Harness, tmp_path: Path) -> None:
    allowed, other = _tree(tmp_path / "allowed"), _tree(tmp_path / "secret")
    os.symlink(other, allowed / "link")  # a link inside the allowed tree does not lead out of it
    agent, _ = harness.make_agent(allowed_sources=[str(allowed)])
    for source, field in ((other, "source_paths.0"), (allowed / "link", "source_paths.0")):
        job = harness.files_job(agent, source, name=f"job {source.name}")
        run_id = harness.run_job(job["id"])
        assert agent.poll_once()
        run = harness.finish(agent, run_id)
        assert run["status"] == "failed" and "refused by the agent" in run["error_summary"], run
        event = _refused(harness, run_id)
        assert event["details"]["field"] == field  # type: ignore[index]
        assert "allowed_sources" in str(event["message"]) and str(source) in str(event["message"])
    assert not (tmp_path / "repo").exists()  # nothing was written
    ok = harness.files_job(agent, allowed / "sub", name="allowed")
    run_id = harness.run_job(ok["id"])
    assert agent.poll_once()
    assert harness.finish(agent, run_id)["status"] == "success"


def test_without_allowed_sources_anything_may_be_backed_up(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    assert agent.config.allowed_sources is None
    job = harness.files_job(agent, _tree(tmp_path / "anywhere"))
    run_id = harness.run_job(job["id"])
    assert agent.poll_once()
    assert harness.finish(agent, run_id)["status"] == "success"


def test_local_repositories_only_under_the_destination_roots(harness: Harness, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    outside = tmp_path.parent / f"{tmp_path.name}-outside" / "repo"
    agent, _ = harness.make_agent(local_destination_roots=[str(tmp_path / "repos")])
    destination = {"type": "local", "path": str(outside), "repository_password": REPO_PASSWORD}
    job = harness.files_job(agent, src, destination=destination)
    run_id = harness.run_job(job["id"])
    assert agent.poll_once()
    run = harness.finish(agent, run_id)
    assert run["status"] == "failed", run
    event = _refused(harness, run_id)
    assert event["details"]["field"] == "destination.path"  # type: ignore[index]
    assert "local_destination_roots" in str(event["message"])
    assert not outside.exists()
    # maintenance on such a repository is refused too (a prune writes and deletes there)
    cmd = harness.command(agent, "maintenance", job["id"], mode="quick")
    agent.commands.poll_once()
    assert harness.finish(agent, cmd["run_id"])["status"] == "failed"
    assert _refused(harness, cmd["run_id"])["details"]["field"] == "destination.path"  # type: ignore[index]
    assert not outside.exists()
    inside = {"type": "local", "path": str(tmp_path / "repos" / "r1"), "repository_password": REPO_PASSWORD}
    harness.api("PATCH", f"/api/jobs/{job['id']}", json={"destination": inside})
    run_id = harness.run_job(job["id"])
    assert agent.poll_once()
    assert harness.finish(agent, run_id)["status"] == "success"
    assert (tmp_path / "repos" / "r1" / "config").exists()
