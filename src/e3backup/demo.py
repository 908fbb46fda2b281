"""The main job on the embedded defaults: server, agent, backups and a restore, judged by restic.

Run by the README's first command (``bash scripts/demo.sh``). It makes a sample tree (parts of
the Python standard library plus a large mixed file) and then tells the whole story with real
processes: ``e3backup server`` (SQLite under ``demo/``), an admin and a tenant, an enrolled
``e3backup agent run``, a files job to a local repository created through the API, two runs
(Full, then Incremental), a restore command whose bytes are compared with the source, and the
independent ``restic check --read-data``. ``--keep-server`` leaves the server running to look
at the dashboard; by default everything is stopped.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def _run(*args: str, env: dict[str, str]) -> None:
    print(f"\n$ e3backup {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "e3backup", *args], env=env, check=True)


def _make_sample(src: Path) -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(stdlib / "json", src / "stdlib-json")
    shutil.copytree(stdlib / "email", src / "stdlib-email")
    rnd = random.Random(42)
    with open(src / "mixed.bin", "wb") as f:
        for i in range(48):
            f.write(rnd.randbytes(1 << 20) if i % 3 == 0 else (b"log line %d\n" % i) * 80000)
    (src / "notes.txt").write_text("e3backup demo\n")
    (src.parent / "password").write_text("demo password (keep yours secret)\n")
    os.symlink("notes.txt", src / "notes-link")


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


ADMIN_EMAIL = "admin@demo.example"
ADMIN_PASSWORD = "demo password 1234"


def _e3(*args: str, input: str | None = None) -> str:
    p = subprocess.run([sys.executable, "-m", "e3backup", *args], input=input, capture_output=True, text=True,
                       check=False)
    if p.returncode != 0:
        raise SystemExit(f"e3backup {' '.join(args)} failed: {p.stderr.strip()}")
    return p.stdout


def _wait(what: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = what()
        except httpx.HTTPError:
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {message}")
        time.sleep(0.2)  # poll interval


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Api:
    def __init__(self, url: str) -> None:
        self.url = url
        r = httpx.post(f"{url}/api/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}, timeout=10)
        r.raise_for_status()
        self.headers = {"Cookie": f"e3_session={r.cookies['e3_session']}", "X-CSRF-Token": r.json()["csrf_token"]}

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        r = httpx.request(method, f"{self.url}{path}", headers=self.headers, timeout=60, **kw)
        if r.status_code >= 400:
            raise SystemExit(f"{method} {path}: {r.status_code} {r.text}")
        return r.json()


def _finished(api: _Api, path: str) -> Callable[[], Any]:
    def check() -> Any:
        run = api("GET", path)
        return run if run["status"] not in ("queued", "running") else None

    return check


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-server", action="store_true", help="leave the server running at the end")
    args = parser.parse_args()
    base = Path(os.environ.get("E3BACKUP_DEMO_DIR", "demo")).resolve()
    if base.exists():
        shutil.rmtree(base)
    src, repo, restores = base / "source", base / "repo", base / "restores"
    src.mkdir(parents=True)
    restores.mkdir()
    _make_sample(src)
    t0 = time.monotonic()
    data_dir, port = base / "server", _free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"$ e3backup server --data-dir {data_dir} create-admin / create-tenant", flush=True)
    _e3("server", "--data-dir", str(data_dir), "create-admin", "--email", ADMIN_EMAIL, "--password-stdin",
        input=ADMIN_PASSWORD + "\n")
    token = _e3("server", "--data-dir", str(data_dir), "create-tenant", "--name", "Demo").split("enrollment token:")[1]
    server = agent = None
    try:
        print(f"$ e3backup server --data-dir {data_dir} --listen 127.0.0.1:{port}", flush=True)
        with open(base / "server.log", "wb") as log:
            server = subprocess.Popen([sys.executable, "-m", "e3backup", "server", "--data-dir", str(data_dir),
                                       "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=log)
        _wait(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, 60, "the server")
        config = base / "agent" / "agent.yaml"
        print(f"$ e3backup agent enroll --server {url} --token e3e_... --config {config}", flush=True)
        print(_e3("agent", "enroll", "--server", url, "--token", token.strip(), "--config", str(config),
                  "--state-dir", str(base / "agent" / "state"), "--restore-root", str(restores),
                  "--destination-root", str(base),
                  "--poll-interval", "0.5", "--command-interval", "0.5").strip())
        print(f"$ e3backup agent run --config {config}   (logs: {base / 'agent.log'})", flush=True)
        with open(base / "agent.log", "wb") as log:
            agent = subprocess.Popen([sys.executable, "-m", "e3backup", "agent", "run", "--config", str(config)],
                                     stdout=log, stderr=log)
        api = _Api(url)
        agent_id = api("GET", "/api/agents")[0]["id"]
        dest = {"type": "local", "path": str(repo), "repository_password": (base / "password").read_text().strip()}
        job = api("POST", "/api/jobs", json={"name": "Demo files", "engine": "files", "agent_id": agent_id,
                                             "source_path": str(src), "destination": dest})
        snapshot = ""
        for n in (1, 2):
            run_id = api("POST", f"/api/jobs/{job['id']}/run")["id"]
            run = _wait(_finished(api, f"/api/runs/{run_id}"), 300, f"run {run_id}")
            codes = [e["code"] for e in api("GET", f"/api/runs/{run_id}/events")]
            print(f"run {n}: {run['status']}, {run['backup_type']}, snapshot {run['snapshot_id'][:8]}, "
                  f"{run['bytes_total']} bytes, events {', '.join(codes)}")
            if run["status"] != "success":
                return 1
            snapshot = run["snapshot_id"]
        target = restores / "demo"
        cmd = api("POST", f"/api/agents/{agent_id}/commands", json={
            "type": "restore", "job_id": job["id"], "payload": {"snapshot_id": snapshot, "target_path": str(target)}})
        done = _wait(lambda: (c := api("GET", f"/api/commands/{cmd['id']}"))["status"] in ("completed", "failed")
                     and c, 300, "the restore")
        print(f"restore command: {done['status']}")
        restored = target / str(src).lstrip("/")
        if done["status"] != "completed" or not _same_tree(src, restored):
            print("\nFAILED: the restored tree differs from the source", file=sys.stderr)
            return 1
        print(f"restored tree is identical to the source ({restored})")
        restic = shutil.which("restic")
        if restic:
            print("\n$ restic check --read-data   (the independent judge)", flush=True)
            subprocess.run([restic, "-r", str(repo), "--password-file", str(base / "password"), "--no-cache",
                            "check", "--read-data"], check=True)
        print(f"\nDemo finished in {time.monotonic() - t0:.1f}s. Repository: {repo}")
        print(f"Dashboard: {url}/  (sign in as {ADMIN_EMAIL} / {ADMIN_PASSWORD}); runs: {url}/api/runs")
        if args.keep_server:
            print("The server keeps running (--keep-server); the agent is stopped. Ctrl-C to stop the server.")
            _stop(agent)
            agent = None
            try:
                server.wait()
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        _stop(agent)
        _stop(server)


if __name__ == "__main__":
    sys.exit(main())
