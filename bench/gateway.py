"""Backup and restore through the repository gateway against direct S3, on one SeaweedFS.

    .venv/bin/python bench/gateway.py                 # 256 MiB of mixed data, 3 rounds, 8 agents
    .venv/bin/python bench/gateway.py --size-mib 128 --rounds 2 --agents 8 --agent-mib 32

Starts a private SeaweedFS (``weed mini``) and ``e3backup server`` as a child process (the gateway
is part of it), with one gateway-mode job per simulated agent written into its database. Then, on
the same data and the same bucket:

- ``e3backup backup`` / ``restore`` to ``s3:`` (direct: the process holds the keys) and to
  ``rest:`` (through the gateway), each into a fresh repository, best of ``--rounds``;
- the same with the stock ``restic`` binary (its own S3 and REST backends), for the ratio;
- ``--agents`` backups at once through the gateway (one repository each), sampling the server
  process's RSS (its peak, ``VmHWM``) and the aggregate throughput.

Prints a table and one JSON line. Run it on a quiet machine and note ``uptime`` beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.plugins.seaweedfs import SeaweedServer, free_ports  # noqa: E402

PASSWORD = "bench gateway password"


def _mixed(path: Path, size: int) -> None:
    """Half random, half text-like (compressible) data, in 4 MiB runs."""
    block = 4 << 20
    text = (b"2026-12-03 12:00:00 INFO e3backup ledger entry account=12345 amount=678.90\n" * 60000)[:block]
    with open(path, "wb") as f:
        for i in range(0, size, block):
            n = min(block, size - i)
            f.write(os.urandom(n) if (i // block) % 2 == 0 else text[:n])


def _seed(data_dir: Path, s3: SeaweedServer, bucket: str, count: int) -> list[tuple[int, str]]:
    """Tenant, agents and gateway-mode jobs in the server's database; returns (job, gateway token)."""
    from e3backup.server import Settings
    from e3backup.server.app import build_state
    from e3backup.server.db import upgrade
    from e3backup.server.db.models import Agent, Job, Tenant
    from e3backup.server.security.tokens import AGENT, gateway_token, hash_token, new_token
    from e3backup.server.services.jobs import secrets_aad

    state = build_state(Settings(data_dir=data_dir))  # creates the key file the server then uses
    upgrade(state.engine)
    now = datetime.now(UTC)
    out = []
    with state.sessions() as s:
        tenant = Tenant(name="bench", created_at=now)
        s.add(tenant)
        s.flush()
        for i in range(count):  # one agent and gateway-mode job (a repository) each
            token = new_token(AGENT)
            agent = Agent(tenant_id=tenant.id, hostname=f"bench-{i}", os="linux", token_hash=hash_token(token),
                          gateway_token_hash=hash_token(gateway_token(token)), created_at=now)
            s.add(agent)
            s.flush()
            dest = {"type": "s3", "endpoint": s3.endpoint, "bucket": bucket, "prefix": f"gw-{i}",
                    "access_key_id": s3.access_key}
            sealed = state.box.seal({"secret_access_key": s3.secret_key, "repository_password": PASSWORD},
                                    secrets_aad(tenant.id))
            job = Job(tenant_id=tenant.id, agent_id=agent.id, name=f"bench {i}", engine="files", source_path="/",
                      destination=dest, destination_secrets=sealed, storage_mode="gateway", created_at=now,
                      updated_at=now)
            s.add(job)
            s.flush()
            out.append((job.id, gateway_token(token)))
        s.commit()
    state.engine.dispose()
    return out


def _run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])}... failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return time.perf_counter() - start


def _e3(*args: str) -> list[str]:
    return [sys.executable, "-m", "e3backup", *args]


class RssSampler:
    """Peak RSS of a process: /proc's VmHWM after the fact, plus samples for the record."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(self._status("VmRSS"))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self) -> int:
        return max(self.samples or [0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--agent-mib", type=int, default=32, help="data per parallel agent")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="e3bench-gateway-"))
    s3 = SeaweedServer(work / "weed")
    server: subprocess.Popen[bytes] | None = None
    try:
        s3.start()
        bucket = s3.make_bucket("e3bench-gateway")
        data_dir = work / "server"
        jobs = _seed(data_dir, s3, bucket, 2 * args.rounds + args.agents)  # fresh repositories for every run
        port = free_ports(1)[0]
        log = (work / "server.log").open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        server = subprocess.Popen(
            _e3("server", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"),
            stdout=log, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit((work / "server.log").read_text())
            time.sleep(0.2)
        idle_rss = RssSampler(server.pid)._status("VmRSS")  # the server just started, nothing served yet
        src = work / "src"
        src.mkdir()
        _mixed(src / "data.bin", args.size_mib << 20)
        size = args.size_mib << 20
        run_env = {**os.environ, **s3.env(), "E3BACKUP_PASSWORD": PASSWORD, "RESTIC_PASSWORD": PASSWORD,
                   "E3BACKUP_CACHE_DIR": str(work / "cache"), "RESTIC_CACHE_DIR": str(work / "restic-cache")}
        results: dict[str, list[float]] = {}

        def record(name: str, seconds: float) -> None:
            results.setdefault(name, []).append(size / seconds / 2**20)

        def rest(job: tuple[int, str]) -> str:
            return f"rest:http://bench:{job[1]}@127.0.0.1:{port}/gateway/job-{job[0]}/"

        for r in range(args.rounds):  # every backup into a new, empty repository
            for name, repo, tool in (("e3backup direct S3", s3.url(bucket, f"direct-{r}"), "e3"),
                                     ("e3backup gateway", rest(jobs[2 * r]), "e3"),
                                     ("restic direct S3", s3.url(bucket, f"restic-direct-{r}"), "restic"),
                                     ("restic gateway", rest(jobs[2 * r + 1]), "restic")):
                out = work / f"restore-{r}-{name.replace(' ', '-')}"
                cmd = _e3("-r", repo) if tool == "e3" else ["restic", "-r", repo]
                _run([*cmd, "init"], run_env)
                record(f"{name} backup", _run([*cmd, "backup", str(src)], run_env))
                record(f"{name} restore", _run([*cmd, "restore", "latest", "--target", str(out)], run_env))
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(work / "cache", ignore_errors=True)
                shutil.rmtree(work / "restic-cache", ignore_errors=True)

        # parallel agents through the gateway: one repository each, all at once
        per_agent = work / "agents"
        per_agent.mkdir()
        agent_jobs = jobs[2 * args.rounds:]
        procs_env = dict(run_env)
        for i, _ in enumerate(agent_jobs):
            (per_agent / f"a{i}").mkdir()
            _mixed(per_agent / f"a{i}" / "data.bin", args.agent_mib << 20)
        for job in agent_jobs:
            _run(_e3("-r", rest(job), "init"), procs_env)
        with RssSampler(server.pid) as rss:
            start = time.perf_counter()
            procs = [subprocess.Popen(_e3("-r", rest(job), "--no-cache", "backup", str(per_agent / f"a{i}")),
                                      env=procs_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                     for i, job in enumerate(agent_jobs)]
            codes = [p.wait() for p in procs]
            elapsed = time.perf_counter() - start
        if any(codes):
            raise SystemExit(f"parallel backups failed: {codes}")
        parallel = {"agents": len(agent_jobs), "mib_each": args.agent_mib,
                    "aggregate_mib_s": len(agent_jobs) * args.agent_mib / elapsed,
                    "gateway_peak_rss_mib": rss.peak() / 2**20,
                    "gateway_rss_before_mib": (rss.samples[0] if rss.samples else 0) / 2**20,
                    "server_idle_rss_mib": idle_rss / 2**20,
                    "server_peak_rss_whole_bench_mib": rss._status("VmHWM") / 2**20}
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        s3.stop(timeout=5)
    best = {k: max(v) for k, v in results.items()}
    print(f"{args.size_mib} MiB mixed data, best of {args.rounds} (MiB/s; each round's values)")
    for k, v in results.items():
        print(f"  {k:34s} {best[k]:7.1f}   " + " ".join(f"{x:.1f}" for x in v))
    for tool in ("e3backup", "restic"):
        for op in ("backup", "restore"):
            ratio = best[f"{tool} gateway {op}"] / best[f"{tool} direct S3 {op}"]
            best[f"{tool} {op} gateway/direct"] = ratio
            print(f"  {tool} {op}: gateway / direct = {ratio:.2f}")
    print(f"  {parallel['agents']} agents x {args.agent_mib} MiB at once: {parallel['aggregate_mib_s']:.1f} MiB/s, "
          f"server RSS {parallel['server_idle_rss_mib']:.0f} MiB idle at start, "
          f"{parallel['gateway_rss_before_mib']:.0f} MiB before, peak {parallel['gateway_peak_rss_mib']:.0f} MiB "
          f"(whole bench: {parallel['server_peak_rss_whole_bench_mib']:.0f} MiB)")
    print(json.dumps({"size_mib": args.size_mib, "rounds": args.rounds, **best, "parallel": parallel}))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
