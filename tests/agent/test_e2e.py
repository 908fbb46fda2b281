"""End to end with real processes: ``e3backup server`` (SQLite), SeaweedFS, and the agent
(``e3backup agent enroll`` + ``e3backup agent run``). Jobs and commands go through the HTTP API."""

from __future__ import annotations

import filecmp
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.plugins.seaweedfs import SeaweedServer, free_ports

pytestmark = pytest.mark.slow
ADMIN = ("ops@msp.example", "correct horse battery")


def e3(*args: str, input: str | None = None, **env: str) -> str:
    p = subprocess.run([sys.executable, "-m", "e3backup", *args], input=input, capture_output=True, text=True,
                       env={**os.environ, **env}, timeout=120, check=False)
    assert p.returncode == 0, f"e3backup {' '.join(args)}: {p.stderr}"
    return p.stdout


class ServerProcess:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.data_dir.parent / "server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "e3backup", "server", "--data-dir", str(self.data_dir),
             "--listen", f"127.0.0.1:{self.port}"], stdout=log, stderr=log, start_new_session=True)
        wait_for(lambda: _healthy(self.url), 60, "server health")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(what: Any, timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = what()
        except httpx.HTTPError:
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.1)  # poll interval of a bounded wait


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.headers: dict[str, str] = {}

    def login(self) -> None:
        r = httpx.post(f"{self.url}/api/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]}, timeout=10)
        assert r.status_code == 200, r.text
        self.headers = {"Cookie": f"e3_session={r.cookies['e3_session']}", "X-CSRF-Token": r.json()["csrf_token"]}

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        r = httpx.request(method, f"{self.url}{path}", headers=self.headers, timeout=60, **kw)
        assert r.status_code < 400, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()


@pytest.fixture
def world(tmp_path: Path, s3_server: SeaweedServer) -> Iterator[dict[str, Any]]:
    server = ServerProcess(tmp_path / "server")
    e3("server", "--data-dir", str(server.data_dir), "create-admin", "--email", ADMIN[0], "--password-stdin",
       input=ADMIN[1] + "\n")
    out = e3("server", "--data-dir", str(server.data_dir), "create-tenant", "--name", "Acme")
    token = out.split("enrollment token:")[1].strip()
    server.start()
    config = tmp_path / "agent" / "agent.yaml"
    (tmp_path / "restores").mkdir()
    e3("agent", "enroll", "--server", server.url, "--token", token, "--config", str(config),
       "--state-dir", str(tmp_path / "agent" / "state"), "--restore-root", str(tmp_path / "restores"),
       "--destination-root", str(tmp_path),
       "--poll-interval", "0.3", "--command-interval", "0.3")
    assert config.stat().st_mode & 0o777 == 0o600
    agent_log = open(tmp_path / "agent.log", "ab")  # noqa: SIM115
    agent = subprocess.Popen([sys.executable, "-m", "e3backup", "agent", "run", "--config", str(config),
                              "--log-format", "json"], stdout=agent_log, stderr=agent_log, start_new_session=True)
    api = Api(server.url)
    api.login()
    try:
        yield {"server": server, "agent": agent, "api": api, "config": config, "s3": s3_server, "tmp": tmp_path}
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(60)
        except subprocess.TimeoutExpired:
            agent.kill()
        server.stop()


def _finished(api: Api, run_id: int) -> dict[str, Any] | None:
    run: dict[str, Any] = api("GET", f"/api/runs/{run_id}")
    return run if run["status"] not in ("queued", "running") else None


ENGINE_LIBRARIES = ("numpy/", "cryptography/")  # shared objects only the engines and the repository load


def _loaded(pid: int) -> set[str]:
    """The engine libraries mapped into a process (``/proc/PID/maps``)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {lib for lib in ENGINE_LIBRARIES if lib in maps}


def test_agent_end_to_end_with_real_processes(world: dict[str, Any]) -> None:
    api, s3, tmp, server = world["api"], world["s3"], world["tmp"], world["server"]
    agents = api("GET", "/api/agents")
    agent_id = agents[0]["id"]
    # idle (started, polled, no run yet): the engines are not loaded, so the daemon stays small (issue 29)
    wait_for(lambda: " started (server" in (tmp / "agent.log").read_text()
             and api("GET", f"/api/agents/{agent_id}")["last_seen_at"], 60, "the agent's first poll")
    assert _loaded(world["agent"].pid) == set()
    src = tmp / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "a.txt").write_text("hello e3backup\n" * 5000)
    with open(src / "big.bin", "wb") as f:
        for _ in range(160):
            f.write(os.urandom(1 << 20))
    dest = {"type": "s3", "endpoint": s3.endpoint, "bucket": s3.make_bucket(), "prefix": "e2e",
            "access_key_id": s3.access_key, "secret_access_key": s3.secret_key,
            "repository_password": "e2e repository password"}
    job = api("POST", "/api/jobs", json={"name": "files", "engine": "files", "agent_id": agent_id,
                                         "source_path": str(src), "destination": dest})

    # run 1 (Full), with the server restarted in the middle of it
    run1 = api("POST", f"/api/jobs/{job['id']}/run")["id"]
    wait_for(lambda: "REPOSITORY_SNAPSHOT_STARTED" in [e["code"] for e in api("GET", f"/api/runs/{run1}/events")],
             60, "run 1 started")
    server.stop()
    server.start()
    r1 = wait_for(lambda: _finished(api, run1), 180, "run 1 finished")
    assert (r1["status"], r1["backup_type"]) == ("success", "full"), r1
    events = api("GET", f"/api/runs/{run1}/events")
    assert [e["seq"] for e in events] == list(range(len(events)))  # complete, in order, no duplicates
    assert _loaded(world["agent"].pid) == set(ENGINE_LIBRARIES)  # imported at the first run
    codes = [e["code"] for e in events]
    assert codes[0] == "STORAGE_OK" and codes[-1] == "REPOSITORY_SNAPSHOT_SAVED", codes

    # run 2 (Incremental)
    (src / "docs" / "b.txt").write_text("new file\n")
    run2 = api("POST", f"/api/jobs/{job['id']}/run")["id"]
    r2 = wait_for(lambda: _finished(api, run2), 180, "run 2 finished")
    assert (r2["status"], r2["backup_type"]) == ("success", "incremental"), r2
    assert r2["bytes_total"] and r2["progress_pct"] == 100

    # a restore command reproduces the bytes
    target = tmp / "restores" / "r"
    payload = {"snapshot_id": r2["snapshot_id"], "target_path": str(target)}
    cmd = api("POST", f"/api/agents/{agent_id}/commands", json={"type": "restore", "job_id": job["id"],
                                                               "payload": payload})
    wait_for(lambda: api("GET", f"/api/commands/{cmd['id']}")["status"] in ("completed", "failed"), 180, "restore")
    assert api("GET", f"/api/commands/{cmd['id']}")["status"] == "completed"
    restored = target / str(src).lstrip("/")
    cmp = filecmp.dircmp(src, restored)
    assert not (cmp.left_only or cmp.right_only or cmp.diff_files)
    assert filecmp.cmp(src / "big.bin", restored / "big.bin", shallow=False)

    # a disk-image job on a loop device
    if os.geteuid() == 0:
        from tests.sources.diskimages import loop_device
        from tests.web.test_browse_image import EXT4, NTFS, _disk

        image = tmp / "disk.img"
        _disk(image)  # GPT: 1-root ext4, 2-data NTFS
        with loop_device(image) as dev:
            ijob = api("POST", "/api/jobs", json={"name": "image", "engine": "disk_image", "agent_id": agent_id,
                                                  "disk_source_volume": dev, "disk_image_format": "raw",
                                                  "destination": {**dest, "prefix": "e2e-image"}})
            for expected in ("full", "incremental"):
                run = api("POST", f"/api/jobs/{ijob['id']}/run")["id"]
                r = wait_for(lambda run=run: _finished(api, run), 180, "image run")
                # read live (no LVM here): the DISK_IMAGE_SNAPSHOT_NONE warning makes the run a warning
                assert (r["status"], r["backup_type"]) == ("warning", expected), r
                codes = [e["code"] for e in api("GET", f"/api/runs/{run}/events")]
                assert "DISK_IMAGE_SNAPSHOT_NONE" in codes and "DISK_IMAGE_SNAPSHOT_NONE" in r["error_summary"]
                assert "DISK_IMAGE_STREAM_START" in codes and codes[-1] == "DISK_IMAGE_STREAM_COMPLETED"

        # files picked in both partitions, read by the agent process through its ext4 and NTFS readers
        picked = tmp / "restores" / "picked"
        payload = {"snapshot_id": r["snapshot_id"], "target_path": str(picked), "conflict": "keep_both",
                   "paths": ["/1-root/notes.txt", "/1-root/dir", "/2-data/big.bin", "/2-data/report.txt"]}
        cmd = api("POST", f"/api/agents/{agent_id}/commands", json={"type": "restore", "job_id": ijob["id"],
                                                                   "payload": payload})
        wait_for(lambda: api("GET", f"/api/commands/{cmd['id']}")["status"] in ("completed", "failed"), 180,
                 "image files restore")
        done = api("GET", f"/api/runs/{cmd['run_id']}")
        assert done["status"] == "success", done
        got = {str(p.relative_to(picked)): p.read_bytes() for p in picked.rglob("*") if p.is_file()}
        assert got == {"1-root/notes.txt": EXT4["notes.txt"], "1-root/dir/sub/c.bin": EXT4["dir/sub/c.bin"],
                       "1-root/dir/empty": b"", "2-data/big.bin": NTFS["big.bin"],
                       "2-data/report.txt": NTFS["report.txt"]}

    status = e3("agent", "status", "--config", str(world["config"]))
    assert f"agent id:      {agent_id}" in status and "current run:   none" in status
    log = (tmp / "agent.log").read_text()
    assert dest["secret_access_key"] not in log and dest["repository_password"] not in log


def test_sync_job_end_to_end_with_real_processes(world: dict[str, Any]) -> None:
    """A sync job created through the HTTP API and run twice by ``e3backup agent run``: the
    bucket mirrors the folder after each run, and the agent's log holds no secret."""
    from tests.engines.sync.helpers import bucket_listing, make_tree, source_listing

    api, s3, tmp = world["api"], world["s3"], world["tmp"]
    agent_id = api("GET", "/api/agents")[0]["id"]
    src = tmp / "mirror-src"
    make_tree(src, big=20 << 20)
    bucket = s3.make_bucket()
    dest = {"type": "s3", "endpoint": s3.endpoint, "bucket": bucket, "prefix": "pc1",
            "access_key_id": s3.access_key, "secret_access_key": s3.secret_key,
            "repository_password": "unused by sync jobs"}
    job = api("POST", "/api/jobs", json={"name": "mirror", "engine": "sync", "agent_id": agent_id,
                                         "source_paths": [str(src)], "destination": dest})
    for expected in ("full", "incremental"):
        run = api("POST", f"/api/jobs/{job['id']}/run")["id"]
        r = wait_for(lambda run=run: _finished(api, run), 180, f"sync run ({expected})")
        assert (r["status"], r["backup_type"]) == ("success", expected), r
        assert bucket_listing(s3.client(), bucket, "pc1") == source_listing(src)
        codes = [e["code"] for e in api("GET", f"/api/runs/{run}/events")]
        assert codes[0] == "STORAGE_OK" and codes[-1] == "SYNC_COMPLETED", codes
        (src / "many" / "0" / "added.txt").write_text("for the second run")
    assert r["sync_result"]["files_transferred"] == 1
    assert r["sync_result"]["files_unchanged"] == len(source_listing(src)) - 1
    log = (tmp / "agent.log").read_text()
    assert "SYNC_COMPLETED" in log and s3.secret_key not in log
