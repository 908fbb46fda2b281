"""The seeds' agent.conf keys (``api_base_url``, ``agent_token``, ``poll_interval_secs``,
``run_dir``, ``log_level``) run a real agent process against a real server process."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e3backup.agent.config import load_config
from e3backup.errors import UsageError

from .test_e2e import ADMIN, Api, ServerProcess, e3, wait_for

pytestmark = pytest.mark.slow


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_a_seeds_config_file_loads_and_is_checked(tmp_path: Path) -> None:
    conf = tmp_path / "agent.conf"
    cfg = load_config(_write(conf, (
        'api_base_url: "https://your-whmcs-server/modules/addons/cloudstorage"\n'
        'agent_token: "your-test-token"\npoll_interval_secs: 10\n'
        f'run_dir: "{tmp_path / "runs"}"\nlog_level: debug\n')))
    assert cfg.server_url == "https://your-whmcs-server/modules/addons/cloudstorage"
    assert (cfg.agent_token, cfg.poll_interval_seconds) == ("your-test-token", 10)
    assert cfg.state_dir == str(tmp_path / "runs")
    assert cfg.log_level == "debug" and cfg.agent_id is None
    status = e3("agent", "status", "--config", str(conf))
    assert "agent id:      not in the config (the token identifies it)" in status
    assert f"state dir:     {tmp_path / 'runs'}" in status
    with pytest.raises(UsageError, match="run_dir and state_dir are the same setting"):
        load_config(_write(tmp_path / "both.conf",
                           "api_base_url: https://x\nagent_token: t\nrun_dir: /a\nstate_dir: /b\n"))
    with pytest.raises(UsageError, match=r"missing server_url \(or api_base_url\)"):
        load_config(_write(tmp_path / "none.conf", "agent_token: t\n"))
    with pytest.raises(UsageError, match="log_level must be one of"):
        load_config(_write(tmp_path / "loud.conf", "api_base_url: https://x\nagent_token: t\nlog_level: loud\n"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str, Api]]:
    srv = ServerProcess(tmp_path / "server")
    e3("server", "--data-dir", str(srv.data_dir), "create-admin", "--email", ADMIN[0], "--password-stdin",
       input=ADMIN[1] + "\n")
    out = e3("server", "--data-dir", str(srv.data_dir), "create-tenant", "--name", "Acme")
    srv.start()
    api = Api(srv.url)
    api.login()
    try:
        yield srv, out.split("enrollment token:")[1].strip(), api
    finally:
        srv.stop()


def _agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "e3backup", "agent", "run", "--config", str(config)],
                            stdout=out, stderr=out, start_new_session=True)


def _stop(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)


def _backup(api: Api, job_id: int) -> dict[str, Any]:
    run_id = api("POST", f"/api/jobs/{job_id}/run")["id"]

    def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = api("GET", f"/api/runs/{run_id}")
        return run if run["status"] not in ("queued", "running") else None

    result: dict[str, Any] = wait_for(finished, 120, f"run {run_id}")
    return result


def test_an_agent_configured_with_the_seeds_keys_backs_up(server: tuple[ServerProcess, str, Api],
                                                          tmp_path: Path) -> None:
    srv, token, api = server
    answer = httpx.post(f"{srv.url}/api/agent/enroll", timeout=30, json={
        "enrollment_token": token, "hostname": "seed-host", "os": "linux"}).json()
    run_dir = tmp_path / "runs"
    config = _write(tmp_path / "agent.conf", (
        f'api_base_url: "{srv.url}"\nagent_token: "{answer["agent_token"]}"\npoll_interval_secs: 1\n'
        f'run_dir: "{run_dir}"\nlog_level: debug\n'
        f'local_destination_roots: ["{tmp_path}"]\n'))  # ours: local repositories only below these
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("seeds\n" * 1000)
    job = api("POST", "/api/jobs", json={
        "name": "files", "engine": "files", "agent_id": answer["agent_id"], "source_path": str(src),
        "destination": {"type": "local", "path": str(tmp_path / "repo"), "repository_password": "seed-password-1"}})

    agent = _agent(config, tmp_path / "debug.log")
    try:
        assert _backup(api, job["id"])["status"] == "success"  # api_base_url + agent_token + polling
    finally:
        _stop(agent)
    assert (run_dir / "outbox").is_dir() and (run_dir / "runs").is_dir()  # run_dir holds the agent's state
    debug = (tmp_path / "debug.log").read_text()
    assert " DEBUG " in debug and " INFO " in debug

    _write(config, config.read_text().replace("log_level: debug", "log_level: warning"))
    agent = _agent(config, tmp_path / "quiet.log")
    try:
        assert _backup(api, job["id"])["status"] == "success"
    finally:
        _stop(agent)
    quiet = (tmp_path / "quiet.log").read_text()
    assert " DEBUG " not in quiet and " INFO " not in quiet
