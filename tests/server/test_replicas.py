"""Replicas: three ``e3backup server`` processes on one real PostgreSQL, on loopback.

An agent and a browser talking to different replicas see one server: live progress, events,
commands, cancel, the disk-list wait and the sign-in rate limit all cross replicas. Killing the
scheduler's leader mid-schedule leaves exactly one leader within 10 s and every due run created
exactly once. SQLite refuses a second server process. Every wait polls a condition with a
deadline; nothing sleeps for timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from e3backup.cli.server_cmd import server as server_cli
from e3backup.server.app import build_state
from e3backup.server.cluster.leader import SCHEDULER_LOCK
from e3backup.server.config import Settings
from e3backup.server.services import users
from tests.plugins.postgres import PostgresServer
from tests.server.conftest import SECRET_KEY, files_job
from tests.server.live import free_port, server_process, server_processes
from tests.server.test_agent_api import DISKS

pytestmark = pytest.mark.slow


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` at the deadline (a
    bound against hanging, wide for a loaded CI machine; the 10 s the issue asks of a new leader is
    asserted where it is measured)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@dataclass
class Replica:
    url: str
    proc: subprocess.Popen[bytes]


@dataclass
class Cluster:
    pg: PostgresServer
    database: str
    replicas: list[Replica]
    user: dict[str, str]  # headers of a signed-in MSP admin
    agent: dict[str, str]  # headers of an enrolled agent
    agent_id: int

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(host=self.pg.host, port=self.pg.port, user=self.pg.user, dbname=self.database,
                             autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def leaders(self) -> list[int]:
        """OS pids of the replicas holding the scheduler's advisory lock (PostgreSQL's truth) in this
        database (advisory locks are per database: other installs on the cluster have their own)."""
        rows = self.sql(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = %s "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            SCHEDULER_LOCK,
        )
        return [int(name.rsplit("-", 1)[1]) for (name,) in rows]

    def alive(self) -> list[Replica]:
        return [r for r in self.replicas if r.proc.poll() is None]


@pytest.fixture(scope="module")
def cluster(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = "e3replicas_" + uuid.uuid4().hex[:8]
    with psycopg.connect(host=postgres_server.host, port=postgres_server.port, user=postgres_server.user,
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres_server.url(name)
    base = tmp_path_factory.mktemp("replicas")
    # the world, through the services, on the same database the replicas will use
    settings = Settings(data_dir=base / "setup", database_url=url, secret_key=SECRET_KEY, argon2_time_cost=1,
                        argon2_memory_kib=1024, scheduler_enabled=False)
    state = build_state(settings)
    from e3backup.api.agent import EnrollRequest
    from e3backup.server.db import upgrade
    from e3backup.server.services import agents

    upgrade(state.engine)
    now = datetime.now(UTC)
    with state.sessions() as session:
        admin = users.create_user(session, state.passwords, now, "admin@msp.example", "correct horse battery",
                                  True, None)
        row, token = users.start_session(session, admin, now, 12)
        user = {"Cookie": f"e3_session={token}", "X-CSRF-Token": row.csrf_token}
        tenant = users.create_tenant(session, "Acme", now)
        enrolled = agents.enroll(
            session, EnrollRequest(enrollment_token=users.rotate_enrollment_token(tenant), hostname="pc1",
                                   os="linux"), now)
        assert enrolled is not None
        agent_row, agent_token = enrolled
        session.commit()
        agent_id = agent_row.id
    state.engine.dispose()
    with ExitStack() as stack:
        dirs = []
        for i in range(3):
            data = base / f"replica{i}"
            data.mkdir(mode=0o700)
            (data / "secret.key").write_text(SECRET_KEY + "\n")
            (data / "secret.key").chmod(0o600)
            dirs.append(data)
        # started together (they migrate and elect in parallel), each waited for on /healthz
        procs = stack.enter_context(server_processes(dirs, "--database-url", url, "--scheduler-interval", "0.3"))
        replicas = [Replica(u, p) for u, p in procs]
        yield Cluster(postgres_server, name, replicas, user, {"Authorization": f"Bearer {agent_token}"}, agent_id)


def _job(c: Cluster, base: str, **overrides: Any) -> dict[str, Any]:
    r = httpx.post(f"{base}/api/jobs", headers=c.user, json=files_job(c.agent_id, source_path="/srv", **overrides))
    assert r.status_code == 201, r.text
    return dict(r.json())


class SseReader:
    """A browser's EventSource on one replica: collects the ``update`` payloads of a run."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.updates: list[dict[str, Any]] = []
        self.ended: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(url, headers), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str]) -> None:
        with httpx.stream("GET", url, headers=headers, timeout=60) as r:
            assert r.status_code == 200
            event = ""
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    with self._lock:
                        if event == "update":
                            self.updates.append(data)
                        elif event == "end":
                            self.ended = data
                            return

    def seen(self) -> tuple[list[int], list[float | None]]:
        """Event seqs and progress values seen so far, in arrival order."""
        with self._lock:
            seqs = [int(e["message"].split()[1]) for u in self.updates for e in u["events"]]
            progress = [u["run"].get("progress_pct") for u in self.updates]
        return seqs, progress

    def join(self) -> None:
        self._thread.join(timeout=30)


def _events(*seqs: int) -> list[dict[str, Any]]:
    return [{"seq": s, "code": "BACKUP_PROGRESS", "message": f"step {s}"} for s in seqs]


def test_agent_on_one_replica_browser_on_another(cluster: Cluster) -> None:
    a, b, c3 = (r.url for r in cluster.replicas)
    job = _job(cluster, a, name="live")
    run = httpx.post(f"{a}/api/jobs/{job['id']}/run", headers=cluster.user)
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    # the agent takes the run from B; the browser watches it on A
    taken = httpx.post(f"{b}/api/agent/next_run", headers=cluster.agent, params={"kind": "backup"}).json()
    assert taken["run"]["run_id"] == run_id
    browser = SseReader(f"{a}/runs/{run_id}/events/stream", cluster.user)
    agent = cluster.agent

    def push(base: str, *seqs: int) -> dict[str, Any]:
        body = {"run_id": run_id, "events": _events(*seqs)}
        r = httpx.post(f"{base}/api/agent/push_events", headers=agent, json=body)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def progress(base: str, pct: float) -> dict[str, Any]:
        r = httpx.post(f"{base}/api/agent/update_run", headers=agent,
                       json={"run_id": run_id, "status": "running", "progress_pct": pct})
        assert r.status_code == 200, r.text
        return dict(r.json())

    push(b, 1, 2, 3)
    progress(b, 40.0)
    wait_for("A's browser to see B's progress", lambda: 40.0 in browser.seen()[1])
    # the agent moves to C mid-run: it resends its last batch (it never got the answer) and goes on
    assert push(c3, 3, 4, 5)["duplicates"] == 1
    progress(c3, 80.0)
    wait_for("A's browser to see C's progress", lambda: 80.0 in browser.seen()[1])
    # cancel asked on A reaches the agent on B, by its update and by a command
    r = httpx.post(f"{a}/api/runs/{run_id}/cancel", headers=cluster.user)
    assert r.status_code == 200, r.text
    assert progress(b, 90.0)["cancel_requested"] is True
    cmds = httpx.post(f"{c3}/api/agent/poll_commands", headers=agent).json()["commands"]
    assert [(c["type"], c["run_id"]) for c in cmds] == [("cancel", run_id)]
    push(b, 6)
    done = httpx.post(f"{b}/api/agent/update_run", headers=agent, json={"run_id": run_id, "status": "cancelled"})
    assert done.status_code == 200, done.text
    wait_for("the stream to end", lambda: browser.ended is not None)
    browser.join()
    seqs, _ = browser.seen()
    assert seqs == [1, 2, 3, 4, 5, 6]  # every event once, in order, whichever replica took it
    assert browser.ended == {"reason": "finished", "status": "cancelled"}


def test_disk_list_asked_on_one_replica_answered_on_another(cluster: Cluster) -> None:
    a, b, _ = (r.url for r in cluster.replicas)
    answer: dict[str, Any] = {}

    def ask() -> None:
        answer["r"] = httpx.post(f"{a}/api/agents/{cluster.agent_id}/disks/refresh", headers=cluster.user,
                                 timeout=60)

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    cmd = wait_for("the list_disks command", lambda: [
        c for c in httpx.post(f"{b}/api/agent/poll_commands", headers=cluster.agent).json()["commands"]
        if c["type"] == "list_disks"])[0]
    r = httpx.post(f"{b}/api/agent/ack_command", headers=cluster.agent,
                   json={"command_id": cmd["command_id"], "status": "completed", "result": DISKS})
    assert r.status_code == 200, r.text
    asker.join(timeout=60)
    assert answer["r"].status_code == 200, answer["r"].text
    assert answer["r"].json()["disks"][0]["model"] == "Samsung SSD"


def test_sign_in_rate_limit_holds_across_replicas(cluster: Cluster) -> None:
    """Five failed sign-ins spread over three replicas use up one budget (login_attempts = 5)."""
    body = {"email": "admin@msp.example", "password": "wrong password!"}
    urls = [r.url for r in cluster.replicas]
    codes = [httpx.post(f"{urls[i % 3]}/api/auth/login", json=body).status_code for i in range(5)]
    assert codes == [401] * 5
    for url in urls:
        r = httpx.post(f"{url}/api/auth/login", json=body)
        assert r.status_code == 429, r.text


def test_leader_killed_mid_schedule(cluster: Cluster) -> None:
    """Jobs fall due in batches; the leader is killed right after one batch falls due. One
    replica leads again within 10 s and every due fire time gets exactly one run."""
    by_pid = {r.proc.pid: r for r in cluster.alive()}
    first = wait_for("a leader", lambda: cluster.leaders() if len(cluster.leaders()) == 1 else None)
    leader = by_pid[first[0]]
    flags = {r.url: httpx.get(f"{r.url}/readyz").json()["scheduler_leader"] for r in cluster.alive()}
    assert flags == {r.url: r is leader for r in cluster.alive()}
    base = next(r for r in cluster.alive() if r is not leader).url
    local = {"type": "local", "path": "/srv/backup", "repository_password": "repo-PASSWORD-0815"}
    jobs = [_job(cluster, base, name=f"nightly {i}", schedule={"cron": "0 3 * * *"}, destination=local)["id"]
            for i in range(24)]
    batches = [jobs[i:i + 6] for i in range(0, len(jobs), 6)]
    due: dict[int, datetime] = {}
    for n, batch in enumerate(batches):
        when = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        cluster.sql("UPDATE jobs SET next_run_at = %s WHERE id = ANY(%s)", when.replace(tzinfo=None), batch)
        due.update(dict.fromkeys(batch, when))
        if n == 1:
            leader.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            leader.proc.wait()
            new = wait_for("a new leader", lambda: cluster.leaders() if len(cluster.leaders()) == 1 else None,
                           timeout=10)
            assert new != first and new[0] in by_pid
            assert time.monotonic() - killed < 10
            gauges = {r.url: _leader_gauge(r.url) for r in cluster.alive()}
            assert sorted(gauges.values()) == [0.0, 1.0]  # the two left say the same as PostgreSQL
            assert [u for u, v in gauges.items() if v == 1.0] == [by_pid[new[0]].url]
    counts = wait_for("a run for every due job", lambda: (lambda rows: rows if len(rows) == len(jobs) else None)(
        cluster.sql("SELECT job_id, count(*), min(scheduled_for), max(trigger) FROM runs "
                    "WHERE job_id = ANY(%s) GROUP BY job_id", jobs)))
    assert {job: n for job, n, _, _ in counts} == dict.fromkeys(jobs, 1)
    assert {job: at.replace(tzinfo=UTC) for job, _, at, _ in counts} == due
    assert {trigger for *_, trigger in counts} == {"schedule"}
    assert len(cluster.leaders()) == 1


def _leader_gauge(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text  # loopback: no credentials
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith("e3backup_scheduler_leader ")))


def test_sqlite_refuses_a_second_server_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with server_process(data):
        second = subprocess.run(
            [sys.executable, "-m", "e3backup", "server", "--data-dir", str(data), "--listen",
             f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert second.returncode != 0
    assert "another e3backup server process" in second.stderr
    assert "SQLite serves one process only" in second.stderr
    runner = CliRunner()
    result = runner.invoke(server_cli, ["--data-dir", str(tmp_path / "other"), "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers needs PostgreSQL" in result.output


def test_uvicorn_workers_share_one_leader_and_one_rate_limit(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """``--workers 2``: two processes on one port, coordinated through PostgreSQL like replicas."""
    name = "e3workers_" + uuid.uuid4().hex[:8]
    with psycopg.connect(host=postgres_server.host, port=postgres_server.port, user=postgres_server.user,
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres_server.url(name)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "secret.key").write_text(SECRET_KEY + "\n")
    (data / "secret.key").chmod(0o600)
    with server_process(data, "--database-url", url, "--workers", "2") as (base, proc):
        c = Cluster(postgres_server, name, [], {}, {}, 0)
        leaders = wait_for("one leader among the workers", lambda: c.leaders() if len(c.leaders()) == 1 else None,
                           timeout=60)
        status = Path(f"/proc/{leaders[0]}/status").read_text()
        assert f"PPid:\t{proc.pid}" in status  # a worker of this server holds the lock
        body = {"email": "nobody@msp.example", "password": "wrong password!"}
        codes = [httpx.post(f"{base}/api/auth/login", json=body).status_code for _ in range(6)]
        assert codes == [401] * 5 + [429]  # one budget, whichever worker took each attempt
