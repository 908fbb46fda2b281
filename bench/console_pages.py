"""The MSP console at scale: page load times with 10,000 runs and 100 agents in the database.

    .venv/bin/python bench/console_pages.py [--runs 10000] [--agents 100] [--repeat 15] [--postgres URL]

Fills a fresh database (SQLite in a temporary folder, or the PostgreSQL URL given) through the
ORM: 3 tenants, ``--agents`` agents (a quarter offline), 3 jobs per agent, ``--runs`` finished
backup runs spread over 30 days (10 % failed, 10 % warnings, 5 events each), 200 audit entries.
Then the real app (FastAPI's TestClient, signed in as an MSP administrator seeing every tenant)
serves each page ``--repeat`` times; the table gives the median and the slowest, in ms, with the
load average. The issue's target: under 150 ms median per page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

PAGES = ("/", "/agents", "/jobs", "/events", "/destinations", "/runs", "/runs?status=failed", "/runs?offset=5000",
         "/runs/{run}", "/jobs/{job}", "/agents/{agent}", "/alerts", "/audit", "/runs.csv?status=failed")


def fill(app: object, runs: int, agents: int) -> dict[str, int]:
    from e3backup.server.db.models import Agent, AuditEvent, Job, Run, RunEvent, Tenant, User
    from e3backup.server.security.tokens import hash_token

    state = app.state.e3  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    with state.sessions() as s:
        admin = User(email="admin@msp.example", password_hash=state.passwords.hash("bench password 1"),
                     role="msp_admin", tenant_id=None, disabled=False, created_at=now)
        s.add(admin)
        tenants = [Tenant(name=f"Customer {i}", created_at=now) for i in range(3)]
        s.add_all(tenants)
        s.flush()
        all_agents, all_jobs = [], []
        for i in range(agents):
            a = Agent(tenant_id=tenants[i % 3].id, hostname=f"pc-{i:03d}", os="windows", token_hash=hash_token(f"t{i}"),
                      created_at=now - timedelta(days=40),
                      last_seen_at=now - (timedelta(hours=3) if i % 4 == 0 else timedelta(seconds=5)))
            all_agents.append(a)
        s.add_all(all_agents)
        s.flush()
        for a in all_agents:
            for k in range(3):
                all_jobs.append(Job(tenant_id=a.tenant_id, agent_id=a.id, name=f"{a.hostname} job {k}", engine="files",
                                    source_path="C:\\Data", destination={"type": "s3", "endpoint": "https://s3.example",
                                    "bucket": f"b{a.tenant_id}", "prefix": a.hostname}, destination_secrets="x",
                                    retention={"keep_last": 7}, policy={}, created_at=now - timedelta(days=40),
                                    updated_at=now))
        s.add_all(all_jobs)
        s.flush()
        batch: list[Run] = []
        for i in range(runs):
            job = all_jobs[i % len(all_jobs)]
            when = now - timedelta(minutes=30 * 24 * 60 * (runs - i) / runs)
            status = "failed" if i % 10 == 0 else "warning" if i % 10 == 1 else "success"
            batch.append(Run(tenant_id=job.tenant_id, job_id=job.id, agent_id=job.agent_id, kind="backup",
                             trigger="schedule", status=status, created_at=when, started_at=when,
                             finished_at=when + timedelta(minutes=4), bytes_processed=10 << 20, bytes_uploaded=1 << 20,
                             files_processed=1000, speed_bytes_per_sec=1e6, snapshot_id=f"{i:064x}",
                             backup_type="incremental", error_summary="disk full" if status == "failed" else None))
        s.add_all(batch)
        s.flush()
        s.add_all(RunEvent(run_id=r.id, seq=k, ts=r.started_at, received_at=r.started_at, code="REPOSITORY_OPENED",
                           level="info", message="opened", details={}) for r in batch for k in range(5))
        s.add_all(AuditEvent(ts=now - timedelta(minutes=i), tenant_id=tenants[i % 3].id, actor="admin@msp.example",
                             action="job.update", target_type="job", target_id=all_jobs[i].id, details={})
                  for i in range(200))
        s.commit()
        return {"run": batch[-1].id, "job": all_jobs[0].id, "agent": all_agents[0].id}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--postgres", default="")
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from e3backup.server import Settings, create_app

    with tempfile.TemporaryDirectory() as tmp:
        url = args.postgres or f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=Path(tmp) / "data", database_url=url, secret_key="bench-" + "k9Zq" * 12,
                            argon2_time_cost=1, argon2_memory_kib=1024, scheduler_enabled=False)
        app = create_app(settings)
        with TestClient(app) as client:
            t0 = time.perf_counter()
            ids = fill(app, args.runs, args.agents)
            filled = time.perf_counter() - t0
            r = client.post("/api/auth/login", json={"email": "admin@msp.example", "password": "bench password 1"})
            assert r.status_code == 200, r.text
            print(f"database: {'PostgreSQL' if args.postgres else 'SQLite'}, {args.runs:,} runs "
                  f"({args.runs * 5:,} events), {args.agents} agents, {args.agents * 3} jobs; filled in {filled:.1f} s")
            # CPU ms: this process's CPU time per request (the app runs in it, nothing else does):
            # on a shared, loaded machine it says what a page costs better than the wall time
            print("\n| page | median ms | slowest ms | median CPU ms |\n|---|---:|---:|---:|")
            medians = []
            for template in PAGES:
                path = template.format(**ids)
                times, cpu = [], []
                for _ in range(args.repeat):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    resp = client.get(path, headers={"Accept": "text/html"})
                    times.append((time.perf_counter() - start) * 1000)
                    cpu.append((time.process_time() - start_cpu) * 1000)
                    assert resp.status_code == 200, (path, resp.status_code)
                medians.append(statistics.median(times))
                print(f"| `{template}` | {medians[-1]:.0f} | {max(times):.0f} | {statistics.median(cpu):.0f} |")
            print(f"\nslowest median: {max(medians):.0f} ms; load average: {os.getloadavg()}")
            sys.exit(0 if max(medians) < 150 else 1)


if __name__ == "__main__":
    main()
