"""The single-file agent runs the agent's end-to-end flow with real processes: the server (from
the checkout), SeaweedFS, and the executable (``agent enroll``, ``agent run``): a files job to S3,
Full then Incremental, and a restore command that gives back the same bytes."""

from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.test_e2e import ADMIN, Api, ServerProcess, e3, wait_for
from tests.plugins.seaweedfs import SeaweedServer

from .conftest import run

pytestmark = pytest.mark.slow


def _finished(api: Api, run_id: int) -> dict[str, Any] | None:
    r: dict[str, Any] = api("GET", f"/api/runs/{run_id}")
    return r if r["status"] not in ("queued", "running") else None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    srv = ServerProcess(tmp_path / "server")
    e3("server", "--data-dir", str(srv.data_dir), "create-admin", "--email", ADMIN[0], "--password-stdin",
       input=ADMIN[1] + "\n")
    out = e3("server", "--data-dir", str(srv.data_dir), "create-tenant", "--name", "Acme")
    srv.start()
    try:
        yield srv, out.split("enrollment token:")[1].strip()
    finally:
        srv.stop()


def test_single_file_agent_end_to_end(agent_exe: Path, server: tuple[ServerProcess, str], tmp_path: Path,
                                      s3_server: SeaweedServer) -> None:
    srv, token = server
    exe = str(agent_exe)
    doc = json.loads(run([exe, "version", "--json"]).stdout)
    assert doc["install"] == "executable" and doc["build"] != "dev"
    config = tmp_path / "agent" / "agent.yaml"
    (tmp_path / "restores").mkdir()
    run([exe, "agent", "enroll", "--server", srv.url, "--config", str(config),
         "--state-dir", str(tmp_path / "agent" / "state"), "--restore-root", str(tmp_path / "restores"),
         "--poll-interval", "0.3", "--command-interval", "0.3"],
        env={**os.environ, "E3BACKUP_ENROLLMENT_TOKEN": token})
    log = open(tmp_path / "agent.log", "ab")  # noqa: SIM115
    agent = subprocess.Popen([exe, "agent", "run", "--config", str(config)], stdout=log, stderr=log,
                             start_new_session=True)
    try:
        api = Api(srv.url)
        api.login()
        agent_id = api("GET", "/api/agents")[0]["id"]
        src = tmp_path / "src"
        (src / "docs").mkdir(parents=True)
        (src / "docs" / "a.txt").write_text("from the single-file agent\n" * 2000)
        (src / "b.bin").write_bytes(os.urandom(2 << 20))
        dest = {"type": "s3", "endpoint": s3_server.endpoint, "bucket": s3_server.make_bucket(), "prefix": "exe",
                "access_key_id": s3_server.access_key, "secret_access_key": s3_server.secret_key,
                "repository_password": "exe repository password"}
        job = api("POST", "/api/jobs", json={"name": "files", "engine": "files", "agent_id": agent_id,
                                             "source_path": str(src), "destination": dest})
        for expected in ("full", "incremental"):
            run_id = api("POST", f"/api/jobs/{job['id']}/run")["id"]
            r = wait_for(lambda run_id=run_id: _finished(api, run_id), 180, f"{expected} run")
            assert (r["status"], r["backup_type"]) == ("success", expected), r
            (src / "docs" / "new.txt").write_text("for the incremental\n")
        assert api("GET", f"/api/agents/{agent_id}")["agent_version"] == doc["version"]

        target = tmp_path / "restores" / "r"
        cmd = api("POST", f"/api/agents/{agent_id}/commands", json={
            "type": "restore", "job_id": job["id"], "payload": {"snapshot_id": r["snapshot_id"],
                                                                 "target_path": str(target)}})
        done = wait_for(lambda: api("GET", f"/api/commands/{cmd['id']}")["status"] in ("completed", "failed"),
                        180, "restore")
        assert done and api("GET", f"/api/commands/{cmd['id']}")["status"] == "completed"
        (src / "docs" / "new.txt").unlink()  # written after the last backup
        restored = target / str(src).lstrip("/")
        cmp = filecmp.dircmp(src, restored)
        assert not (cmp.left_only or cmp.right_only or cmp.diff_files), (cmp.left_only, cmp.right_only)
        assert filecmp.cmp(src / "b.bin", restored / "b.bin", shallow=False)
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(60)
        except subprocess.TimeoutExpired:
            agent.kill()
    assert dest["secret_access_key"] not in (tmp_path / "agent.log").read_text()
