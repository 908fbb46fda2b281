"""The wizard's storage access (#30), in real Chromium against the live server, then a real agent
(in-process, over HTTP) runs both jobs: the gateway job's run carries no storage credentials and
its backup reaches the bucket through the server's gateway; the direct job's run carries the
bucket's keys and the agent writes to S3 itself. Where the gateway cannot run (a folder of the
agent machine, a sync job) the choice is not offered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from e3backup.agent.config import AgentConfig
from e3backup.agent.runner import Agent
from e3backup.agent.transport import HttpxTransport, Response
from e3backup.server.db.models import Job, Run, Tenant
from e3backup.server.services import users
from tests.conftest import FAST_KDF
from tests.plugins.seaweedfs import SeaweedServer
from tests.web.browser import LiveServer, sign_in

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

REPO_PASSWORD = "storage-mode-repo-password-4711"


class Recording(HttpxTransport):
    """The agent's transport, keeping each ``next_run`` answer the server gave."""

    def __init__(self, client: httpx.Client) -> None:
        super().__init__(client)
        self.runs: list[Any] = []

    def request(self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None,
                params: dict[str, Any] | None = None) -> Response:
        r = super().request(method, path, json=json, headers=headers, params=params)
        if path.endswith("/next_run") and r.status == 200 and isinstance(r.body, dict) and r.body.get("run"):
            self.runs.append(r.body["run"])
        return r


def _agent(live: LiveServer, tmp: Path) -> tuple[Agent, Recording]:
    state = live.app.state.e3
    with state.sessions() as s:
        token = users.rotate_enrollment_token(s.get(Tenant, live.tenants["Globex"]))
        s.commit()
    r = httpx.post(f"{live.url}/api/agent/enroll", json={
        "enrollment_token": token, "hostname": "gx-gateway", "os": "linux", "platform": "linux",
        "engines": ["files", "sync"]})
    assert r.status_code == 201, r.text
    transport = Recording(httpx.Client(base_url=live.url, timeout=60))
    config = AgentConfig(server_url=live.url, agent_id=r.json()["agent_id"], agent_token=r.json()["agent_token"],
                         state_dir=str(tmp / "state"), poll_interval_seconds=0.05, command_interval_seconds=0.05,
                         disk_report_interval_seconds=3600, progress_interval_seconds=0.2)
    return Agent(config, transport, kdf=FAST_KDF, client_backoff=0.0, delivery_retry=0.05,
                 snapshot_cleanup=lambda: []), transport


def _fill(page: Any, name: str, source: Path, s3: SeaweedServer, bucket: str) -> None:
    page.get_by_label("Job name", exact=True).fill(name)
    page.get_by_label("Folders or files", exact=True).fill(str(source))
    page.get_by_label("Endpoint URL", exact=True).fill(s3.endpoint)
    page.get_by_label("Bucket", exact=True).fill(bucket)
    page.get_by_label("Access key ID", exact=True).fill(s3.access_key)
    page.get_by_label("Secret access key", exact=True).fill(s3.secret_key)
    page.get_by_label("Repository password", exact=True).fill(REPO_PASSWORD)


def _snapshots(s3: SeaweedServer, bucket: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return [o["Key"] for o in listed if o["Key"].startswith("snapshots/")]


def test_the_wizards_storage_access_decides_how_the_agent_writes(
    browser: Any, live_server: LiveServer, s3_server: SeaweedServer, tmp_path: Path
) -> None:
    agent, transport = _agent(live_server, tmp_path)
    source = tmp_path / "data"
    source.mkdir()
    (source / "report.txt").write_text("quarterly figures\n" * 1000)
    buckets = {"gateway": s3_server.make_bucket(), "direct": s3_server.make_bucket()}
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        sign_in(page, live_server.url, "bob@globex.example", f"/jobs/new?agent_id={agent.config.agent_id}")
        through = page.get_by_label("Through this server's gateway (append-only)")
        direct = page.get_by_label("Directly, with the storage credentials")
        expect(through).to_be_checked()  # the default for a bucket
        expect(page.locator("#storage_mode-hint")).to_contain_text("never receives the bucket's keys")
        page.get_by_label("A folder on the agent machine").check()
        expect(through).to_be_hidden()  # the gateway does not serve a folder of the agent machine
        expect(through).to_be_disabled()
        page.get_by_label("S3-compatible bucket").check()
        expect(through).to_be_visible()
        page.get_by_label("Sync", exact=True).check()
        expect(through).to_be_hidden()  # plain files, no repository
        page.get_by_label("Files", exact=True).check()
        _fill(page, "via gateway", source, s3_server, buckets["gateway"])
        page.get_by_role("button", name="Create job").click()
        page.wait_for_url("**/jobs/*?notice=created")
        page.get_by_role("button", name="Run now").click()
        page.wait_for_url(lambda u: "/jobs/new" not in u and "notice=created" not in u)

        page.goto(f"{live_server.url}/jobs/new?agent_id={agent.config.agent_id}")
        _fill(page, "direct to S3", source, s3_server, buckets["direct"])
        direct.check()
        page.get_by_role("button", name="Create job").click()
        page.wait_for_url("**/jobs/*?notice=created")
        page.get_by_role("button", name="Run now").click()
        page.wait_for_url(lambda u: "notice=created" not in u)
    finally:
        context.close()

    state = live_server.app.state.e3
    with state.sessions() as s:
        jobs = {j.name: j for j in s.scalars(select(Job).where(Job.agent_id == agent.config.agent_id))}
        assert {n: j.storage_mode for n, j in jobs.items()} == {"via gateway": "gateway", "direct to S3": "direct"}
        queued = s.scalars(select(Run).where(Run.agent_id == agent.config.agent_id)).all()
        assert len(queued) == 2
    try:
        for _ in range(2):
            assert agent.poll_once()
            assert agent.wait_idle(120)
        agent.outbox.flush(agent.client)
    finally:
        agent._stop.set()
        agent.stop(timeout=30)
    with state.sessions() as s:
        statuses = {s.get(Job, r.job_id).name: r.status for r in s.scalars(  # type: ignore[union-attr]
            select(Run).where(Run.agent_id == agent.config.agent_id))}
    assert statuses == {"via gateway": "success", "direct to S3": "success"}, statuses
    given = {run["job_id"]: run["destination"] for run in transport.runs}
    via_gateway, to_s3 = given[jobs["via gateway"].id], given[jobs["direct to S3"].id]
    assert via_gateway["type"] == "gateway" and via_gateway["url"].startswith(f"{live_server.url}/gateway/job-")
    assert not {"endpoint", "bucket", "access_key_id", "secret_access_key"} & set(via_gateway)
    assert s3_server.secret_key not in json.dumps(transport.runs[[r["job_id"] for r in transport.runs].index(
        jobs["via gateway"].id)])
    assert to_s3["type"] == "s3" and to_s3["secret_access_key"] == s3_server.secret_key
    assert to_s3["bucket"] == buckets["direct"]
    # each backup is in its own bucket: one written by the gateway, one by the agent itself
    assert len(_snapshots(s3_server, buckets["gateway"])) == 1
    assert len(_snapshots(s3_server, buckets["direct"])) == 1
