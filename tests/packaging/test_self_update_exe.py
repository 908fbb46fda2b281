"""Self-update of the real single-file agent, with real processes (server, executables): enrolled
with the MSP's key and running a job, it is offered a signed version that passes its start check
but dies when it really starts, and comes back on its own version (started again as systemd's
``Restart=on-failure`` does) saying so; then a good version, which it switches to in the same
process and runs the next job on; then SIGTERM stops it (the nested bootloaders forward it).
The newer versions are the session's build restamped (``restamp.py``), not second builds. The
refusals and the in-process cases: tests/agent/test_self_update.py."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.agent.test_e2e import ADMIN, Api, ServerProcess, e3, wait_for

from .conftest import run
from .restamp import restamped

pytestmark = pytest.mark.slow

CRASHES_AT_START = 'import sys\nif "--check-start" not in sys.argv:\n    raise SystemExit(3)\n'


def test_a_single_file_agent_rolls_back_a_version_that_dies_updates_to_a_good_one_and_stops_on_sigterm(
    agent_exe: Path, agent_exe_next: tuple[Path, str], tmp_path: Path
) -> None:
    new_exe, new_version = agent_exe_next
    bad_version = "98.0.0"
    bad_exe = restamped(agent_exe, tmp_path / "bad" / "e3backup", bad_version, prelude=CRASHES_AT_START)
    exe = tmp_path / "bin" / "e3backup"
    exe.parent.mkdir()
    exe.write_bytes(agent_exe.read_bytes())
    exe.chmod(0o755)
    old_version = run([str(exe), "--version"]).stdout.split()[1]
    srv = ServerProcess(tmp_path / "server")
    e3("server", "--data-dir", str(srv.data_dir), "create-admin", "--email", ADMIN[0], "--password-stdin",
       input=ADMIN[1] + "\n")
    token = e3("server", "--data-dir", str(srv.data_dir), "create-tenant", "--name", "Acme").split(
        "enrollment token:")[1].strip()
    srv.start()
    pub = e3("release", "keygen", "--out", str(tmp_path / "release.key")).split("public key: ")[1].strip()
    for version, file in ((bad_version, bad_exe), (new_version, new_exe)):
        e3("release", "sign", "--key", str(tmp_path / "release.key"), "--version", version, "--platform",
           "linux-x86_64", str(file))
        e3("server", "--data-dir", str(srv.data_dir), "add-agent-release", "--version", version, "--platform",
           "linux-x86_64", "--file", str(file), "--signature", f"{file}.sig")
    config = tmp_path / "agent.yaml"
    run([str(exe), "agent", "enroll", "--server", srv.url, "--config", str(config), "--state-dir",
         str(tmp_path / "state"), "--destination-root", str(tmp_path), "--poll-interval", "0.3",
         "--command-interval", "0.3", "--update-key", pub], env={**os.environ, "E3BACKUP_ENROLLMENT_TOKEN": token})
    log = open(tmp_path / "agent.log", "ab")  # noqa: SIM115

    def start_agent() -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(exe), "agent", "run", "--config", str(config)], stdout=log, stderr=log,
                                start_new_session=True)

    agent = start_agent()
    try:
        api = Api(srv.url)
        api.login()
        agent_id = wait_for(lambda: api("GET", "/api/agents"), 60, "the agent")[0]["id"]
        src = tmp_path / "src"
        src.mkdir()
        (src / "a.txt").write_text("before and after the update\n" * 500)
        job = api("POST", "/api/jobs", json={"name": "f", "engine": "files", "agent_id": agent_id,
                                             "source_path": str(src), "destination": {
                                                 "type": "local", "path": str(tmp_path / "repo"),
                                                 "repository_password": "update test password"}})

        def finished(run_id: int) -> dict[str, Any] | None:
            r: dict[str, Any] = api("GET", f"/api/runs/{run_id}")
            return r if r["status"] not in ("queued", "running") else None

        def update_event(code: str) -> dict[str, Any] | None:
            a: dict[str, Any] = api("GET", f"/api/agents/{agent_id}")
            return a if (a.get("update_event") or {}).get("code") == code else None

        first = api("POST", f"/api/jobs/{job['id']}/run")["id"]
        assert wait_for(lambda: finished(first), 180, "the first run")["status"] == "success"
        assert api("GET", f"/api/agents/{agent_id}")["agent_version"] == old_version

        # a version that passes `agent run --check-start` but dies when it runs: the switched-to
        # process exits; the installed file is still the old version, which the restart runs
        e3("server", "--data-dir", str(srv.data_dir), "set-agent-version", "--tenant", "Acme", "--version",
           bad_version)
        assert agent.wait(300) != 0
        assert exe.read_bytes() == agent_exe.read_bytes()
        agent = start_agent()  # what systemd's Restart=on-failure does
        a = wait_for(lambda: update_event("AGENT_UPDATE_ROLLED_BACK"), 120, "AGENT_UPDATE_ROLLED_BACK")
        assert a["update_event"]["version"] == bad_version and a["agent_version"] == old_version
        assert f"{bad_version} stopped before it reported to the server" in a["update_event"]["message"]
        assert not list(exe.parent.glob(".*.new"))

        e3("server", "--data-dir", str(srv.data_dir), "set-agent-version", "--tenant", "Acme", "--version",
           new_version)
        a = wait_for(lambda: update_event("AGENT_UPDATED"), 300, "AGENT_UPDATED")
        assert a["agent_version"] == new_version and a["out_of_date"] is False
        assert agent.poll() is None  # the same process, now running the new file
        assert exe.read_bytes() == new_exe.read_bytes()
        assert exe.with_name("e3backup.previous").read_bytes() == agent_exe.read_bytes()

        second = api("POST", f"/api/jobs/{job['id']}/run")["id"]
        assert wait_for(lambda: finished(second), 180, "the next run")["status"] == "success"
        assert api("GET", f"/api/agents/{agent_id}")["agent_version"] == new_version
    finally:
        # SIGTERM to the process group (a terminal's Ctrl-C, a kill of the group), twice: with two
        # bootloaders forwarding, the agent's handler runs several times within a millisecond
        for _ in range(2):
            os.killpg(agent.pid, signal.SIGTERM)
        try:
            code = agent.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(agent.pid, signal.SIGKILL)
            raise
        finally:
            srv.stop()
    assert code == 0
    text = (tmp_path / "agent.log").read_text()
    assert f"self-update AGENT_UPDATED: {new_version} updated from {old_version}" in text
