"""Browsing a 100,000-file snapshot from the dashboard: first listing time and memory.

    .venv/bin/python bench/browse_snapshot.py [--files 100000] [--per-dir 1000] [--workdir DIR]

Writes a files snapshot with ``--files`` small files (each its own data blob, so the index
holds as many entries as a real backup of that many files) in folders of ``--per-dir`` files,
plus one flat folder of 10,000, with our repository writer (real KDF parameters). Then a fresh
child process runs the real server app (SQLite, one tenant, agent, job and finished run) and,
through HTTP (FastAPI's TestClient, signed in as the tenant's administrator), times:

- the first listing of the snapshot's root (opens the repository: key derivation, index, the
  snapshot, the root tree): what a user waits for after clicking *Browse*;
- a listing of a 1,000-entry folder and of the 10,000-entry folder (each request opens the
  repository again: nothing is cached between requests);
- a search by name across all files (200 hits cap; a name that matches nothing walks them all);
- a ZIP download of a 1,000-file folder.

Memory: the child's RSS before the first request and its peak (``ru_maxrss``) after all of them.
restic ``ls`` of the same snapshot and folder (restic reads our repository) runs in the same
session for comparison. Prints a markdown table and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASSWORD = "bench-browse-password"


def build(repo_dir: Path, files: int, per_dir: int) -> str:
    from e3backup.repo import BlobType, Node, Repository, Snapshot
    from e3backup.store import LocalStore

    repo = Repository.init(LocalStore(repo_dir), PASSWORD.encode())
    dir_mode = 0o755 | (1 << 31)
    with repo.lock(), repo.writer() as w:
        def folder(prefix: str, count: int, start: int) -> bytes:
            nodes = []
            for i in range(start, start + count):
                data = b"file %d of the browse benchmark\n" % i
                blob, _ = w.save(BlobType.DATA, data)
                nodes.append(Node(name=b"%s-%06d.txt" % (prefix.encode(), i), type="file", mode=0o644,
                                  size=len(data), content=[blob], mtime=1_700_000_000 * 10**9))
            return repo.save_tree(w, nodes)

        dirs = []
        flat = 10_000
        for d, start in enumerate(range(0, files - flat, per_dir)):
            sub = folder("f", min(per_dir, files - flat - start), start)
            dirs.append(Node(name=b"d%04d" % d, type="dir", mode=dir_mode, subtree=sub, mtime=1))
        dirs.append(Node(name=b"flat", type="dir", mode=dir_mode, subtree=folder("g", flat, files - flat), mtime=1))
        root = repo.save_tree(w, dirs)
    snap_id = repo.save_snapshot(Snapshot(time=1_700_000_000 * 10**9, tree=root, paths=["/data"], hostname="bench"))
    repo.close()
    return snap_id


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def child(workdir: Path, repo_dir: Path, snap_id: str) -> None:
    from fastapi.testclient import TestClient

    from e3backup.api.agent import EnrollRequest
    from e3backup.server import Settings, create_app
    from e3backup.server.services import agents, users

    settings = Settings(data_dir=workdir / "server", database_url=f"sqlite:///{workdir / 'server.db'}",
                        secret_key="bench-secret-key-0123456789abcdef0123456789", scheduler_enabled=False,
                        argon2_time_cost=1, argon2_memory_kib=1024, browse_local_roots=[repo_dir.parent])
    app = create_app(settings)
    out: dict[str, float] = {}
    with TestClient(app) as client:
        state = app.state.e3
        with state.sessions() as s:
            now = state.clock.now()
            tenant = users.create_tenant(s, "Bench", now)
            users.create_user(s, state.passwords, now, "admin@bench.example", "bench password 1", False, tenant.id)
            token = users.rotate_enrollment_token(tenant)
            enrolled = agents.enroll(s, EnrollRequest(enrollment_token=token, hostname="bench", os="linux"), now)
            assert enrolled is not None
            agent_token = enrolled[1]
            agent_id = enrolled[0].id
            s.commit()
        r = client.post("/api/auth/login", json={"email": "admin@bench.example", "password": "bench password 1"})
        cookie = {"Cookie": f"e3_session={r.cookies['e3_session']}", "X-CSRF-Token": r.json()["csrf_token"]}
        client.cookies.clear()
        job = client.post("/api/jobs", headers=cookie, json={
            "name": "bench", "engine": "files", "agent_id": agent_id, "source_path": "/data",
            "destination": {"type": "local", "path": str(repo_dir), "repository_password": PASSWORD}}).json()
        client.post(f"/api/jobs/{job['id']}/run", headers=cookie)
        bearer = {"Authorization": f"Bearer {agent_token}"}
        run = client.post("/api/agent/next_run", headers=bearer, json={}).json()["run"]
        client.post("/api/agent/update_run", headers=bearer,
                    json={"run_id": run["run_id"], "status": "success", "snapshot_id": snap_id})
        html = {**cookie, "Accept": "text/html"}
        base = f"/runs/{run['run_id']}/browse"
        out["rss_before_mib"] = rss() / 2**20

        def timed(name: str, method: str, url: str, **kw: object) -> None:
            client.cookies.clear()
            t, cpu = time.perf_counter(), time.process_time()
            r = client.request(method, url, headers=html, **kw)  # type: ignore[arg-type]
            out[name] = time.perf_counter() - t
            out[name + "_cpu"] = time.process_time() - cpu
            assert r.status_code == 200, (url, r.status_code, r.text[:300])
            out[name + "_bytes"] = len(r.content)

        # the process's first page compiles the base templates (once per server process, not per
        # snapshot): timed apart, so the first listing measures the snapshot
        timed("first_page_of_process", "GET", "/")
        timed("first_listing", "GET", base)
        timed("second_listing_root", "GET", base)
        timed("folder_1000", "GET", base, params={"path": "d0000"})
        timed("folder_10000", "GET", base, params={"path": "flat"})
        timed("search_all_no_hit", "GET", base, params={"q": "no-such-name"})
        timed("zip_1000", "POST", f"{base}/download",
              data={"csrf_token": cookie["X-CSRF-Token"], "base": "", "paths": ["d0001"], "format": "zip"})
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def restic_ls(repo_dir: Path, snap_id: str, path: str) -> float:
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD}
    t = time.perf_counter()
    subprocess.run(["restic", "-r", str(repo_dir), "--no-cache", "ls", snap_id[:8], path], env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--per-dir", type=int, default=1000)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--child", nargs=3)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.child[2])
        return
    work = Path(tempfile.mkdtemp(prefix="e3b-browse-", dir=args.workdir))
    try:
        t = time.perf_counter()
        repo_dir = work / "repos" / "bench"
        snap_id = build(repo_dir, args.files, args.per_dir)
        print(f"built {args.files} files in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        load_before = os.getloadavg()
        p = subprocess.run([sys.executable, __file__, "--child", str(work), str(repo_dir), snap_id],
                           capture_output=True, text=True, check=True)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        restic_root = restic_ls(repo_dir, snap_id, "/d0000")
        restic_flat = restic_ls(repo_dir, snap_id, "/flat")
        def row(label: str, key: str, restic: str = "—") -> None:
            print(f"| {label} | {r[key]:.2f} s | {r[key + '_cpu']:.2f} s | {restic} |")

        print("| what | e3backup dashboard, wall (HTTP) | its CPU time | restic ls, wall |\n|---|---|---|---|")
        row("the server process's first page (templates compiled)", "first_page_of_process")
        row(f"first listing (root of a {args.files:,}-file snapshot)", "first_listing")
        row("root again (repository reopened)", "second_listing_root")
        row("folder of 1,000 files", "folder_1000", f"{restic_root:.2f} s")
        row("folder of 10,000 files (first page of 1,000 shown)", "folder_10000", f"{restic_flat:.2f} s")
        row("search all names (no hit: every tree read)", "search_all_no_hit")
        row(f"ZIP of a 1,000-file folder ({r['zip_1000_bytes'] / 1024:.0f} KiB)", "zip_1000")
        print(f"| RSS before the first request / peak | {r['rss_before_mib']:.0f} / {r['peak_rss_mib']:.0f} MiB | | |")
        print(f"\nload average before {load_before}, after {os.getloadavg()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
