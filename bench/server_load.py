"""Control-plane load: simulated agents against one or two real server replicas on PostgreSQL.

    .venv/bin/python bench/server_load.py ramp [--replicas 1] [--agents 2500,5000,10000,20000]
                                             [--step-seconds 20] [--poll 60] [--active 0.01]
    .venv/bin/python bench/server_load.py soak --agents 10000 [--seconds 600] [--sample 30]

Everything runs on loopback: a throwaway PostgreSQL cluster (or ``--database-url``), ``--replicas``
``e3backup server`` processes on it (access log off), and this process as the fleet. The fleet
is open-loop, so a slow server cannot slow the offered load down (no coordinated omission): every
agent polls ``next_run?kind=backup`` once per ``--poll`` seconds at its own phase, and the
``--active`` fraction of agents runs a backup that sends ``update_run`` (progress) and
``push_events`` (a batch of 5 events) every 10 s each. Latency is counted from the moment a
request was due, so a client that falls behind shows as latency too (its lag is reported
apart). With two replicas the requests alternate between them, as a round-robin balancer would.

``ramp`` first has every agent of the largest fleet poll once (unmeasured, ``--no-prime`` skips
it: a running fleet is known to its replica), then steps through the fleet sizes, each for
``--step-seconds``, and reports per step the
requests per second, p50/p99/max latency, errors, and the largest fleet held with p99 under
200 ms. ``soak`` holds one fleet size for ``--seconds`` and samples every ``--sample`` seconds the
servers' memory (RSS), open file descriptors, PostgreSQL connections, p99 and errors. Bounded in
time and count; prints a Markdown table and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET_KEY = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
TARGET_P99 = 0.200
ACTIVE_PERIOD = 10.0  # seconds between an active agent's progress updates (and its event batches)


@dataclass
class Fleet:
    tokens: list[str]
    runs: dict[int, int]  # agent index -> its running run's id


def prepare(url: str, agents: int, active: float) -> Fleet:
    """A migrated database with ``agents`` enrolled agents; the active ones each have a running run."""
    from sqlalchemy import insert

    from e3backup.server.app import build_state
    from e3backup.server.config import Settings
    from e3backup.server.db import upgrade
    from e3backup.server.db.models import Agent, Job, Run, Tenant
    from e3backup.server.security.tokens import hash_token
    from e3backup.server.services.jobs import secrets_aad

    state = build_state(Settings(data_dir=Path(tempfile.mkdtemp(prefix="e3-load-")), database_url=url,
                                 secret_key=SECRET_KEY))
    upgrade(state.engine)
    now = datetime.now(UTC)
    tokens = [f"e3a_bench{i:06d}{uuid.uuid4().hex}" for i in range(agents)]
    n_active = max(1, int(agents * active))
    with state.sessions() as s:
        tenant = Tenant(name="Load", created_at=now)
        s.add(tenant)
        s.flush()
        s.execute(insert(Agent), [
            {"tenant_id": tenant.id, "hostname": f"pc{i}", "os": "linux", "token_hash": hash_token(t),
             "revoked": False, "created_at": now, "last_seen_at": now,
             "agent_version": "bench"}  # what the fleet reports: a restart is not an upgrade
            for i, t in enumerate(tokens)
        ])
        ids = dict(s.execute(Agent.__table__.select().with_only_columns(Agent.hostname, Agent.id)).all())
        runs = {}
        for i in range(n_active):
            job = Job(tenant_id=tenant.id, agent_id=ids[f"pc{i}"], name=f"job{i}", engine="files",
                      source_path="/srv", destination={"type": "local", "path": "/backup"},
                      destination_secrets=state.box.seal({"repository_password": "bench"}, secrets_aad(tenant.id)),
                      created_at=now, updated_at=now)
            s.add(job)
            s.flush()
            run = Run(tenant_id=tenant.id, job_id=job.id, agent_id=ids[f"pc{i}"], kind="backup", trigger="manual",
                      status="running", created_at=now, started_at=now)
            s.add(run)
            s.flush()
            runs[i] = run.id
        s.commit()
    state.engine.dispose()
    return Fleet(tokens, runs)


@contextlib.contextmanager
def replicas(url: str, count: int, base: Path) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    from tests.server.live import server_processes

    dirs = []
    for i in range(count):
        d = base / f"replica{i}"
        d.mkdir(mode=0o700, parents=True)
        (d / "secret.key").write_text(SECRET_KEY + "\n")
        (d / "secret.key").chmod(0o600)
        dirs.append(d)
    with server_processes(dirs, "--database-url", url, "--no-access-log", "--db-pool-size", "20") as procs:
        yield procs


@dataclass
class Window:
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    dues: list[float] = field(default_factory=list)  # when each call was due (monotonic)
    errors: int = 0
    by_call: dict[str, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    server_cpu: float = 0.0  # CPU seconds the replicas used during the window
    db_cpu: float = 0.0  # and PostgreSQL

    def add(self, call: str, latency: float, lag: float, error: str | None, due: float = 0.0) -> None:
        self.by_call[call] = self.by_call.get(call, 0) + 1
        self.dues.append(due)
        self.latencies.append(latency)
        self.lags.append(lag)
        if error is not None:
            self.errors += 1
            self.error_kinds[error] = self.error_kinds.get(error, 0) + 1


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Connection:
    """One keep-alive HTTP/1.1 connection to a replica: a request, then its whole response.

    Written here rather than httpx: at thousands of queued requests httpx's pool spends its time
    matching requests to connections (quadratic), and the fleet, not the server, was measured."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, token: str, body: bytes) -> int:
        """The response's status. A kept-alive connection the server closed while idle (uvicorn
        closes them after 5 s) is reopened and the request sent once more, as HTTP clients do."""
        reused = self.writer is not None
        try:
            return await self._post(path, token, body)
        except (OSError, asyncio.IncompleteReadError) as e:
            if not reused or (isinstance(e, asyncio.IncompleteReadError) and e.partial):
                raise
            return await self._post(path, token, body)

    async def _post(self, path: str, token: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        try:
            self.writer.write(head.encode() + body)
            status_line = await self.reader.readuntil(b"\r\n")
            length, close = 0, False
            while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            await self.reader.readexactly(length)
            if close:
                self.close()
            return int(status_line.split()[1])
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Load:
    """The open-loop fleet: ``agents`` agents' calls, due at fixed times, sent whatever happens.

    Due calls wait in a queue for one of ``CONNECTIONS`` keep-alive connections per replica (an
    agent fleet behind NAT and a balancer looks much the same to the server); the wait counts."""

    CONNECTIONS = 64

    def __init__(self, urls: list[str], fleet: Fleet, agents: int, poll: float,
                 server_pids: list[int], db_pids: Callable[[], list[int]]) -> None:
        self.urls = urls
        self.server_pids = server_pids
        self.db_pids = db_pids
        self.fleet = fleet
        self.agents = agents
        self.poll = poll
        self.window = Window()
        self.seq: dict[int, int] = {}
        self._queues: list[asyncio.Queue[tuple[float, str, int] | None]] = []
        self._turn = 0

    def schedule(self, start: float, seconds: float) -> list[tuple[float, str, int]]:
        """Every call due in [start, start + seconds), at each agent's own phase."""
        rng = random.Random(self.agents)
        calls = []
        for i in range(self.agents):
            phase = rng.uniform(0, self.poll)
            t = phase
            while t < seconds:
                calls.append((start + t, "next_run", i))
                t += self.poll
            if i in self.fleet.runs:
                t = rng.uniform(0, ACTIVE_PERIOD)
                while t < seconds:
                    calls.append((start + t, "update_run", i))
                    calls.append((start + t + ACTIVE_PERIOD / 2, "push_events", i))
                    t += ACTIVE_PERIOD
        return sorted(c for c in calls if c[0] < start + seconds)

    def request(self, kind: str, i: int) -> tuple[str, bytes]:
        if kind == "next_run":
            return "/api/agent/next_run?kind=backup", json.dumps({"agent_version": "bench"}).encode()
        if kind == "update_run":
            return "/api/agent/update_run", json.dumps({
                "run_id": self.fleet.runs[i], "progress_pct": round(random.uniform(0, 99), 1),
                "bytes_processed": 1 << 30}).encode()
        seq = self.seq.get(i, 0)
        self.seq[i] = seq + 5
        events = [{"seq": seq + k + 1, "code": "BACKUP_PROGRESS", "message": "bench"} for k in range(5)]
        return "/api/agent/push_events", json.dumps({"run_id": self.fleet.runs[i], "events": events}).encode()

    async def worker(self, conn: Connection, queue: asyncio.Queue[tuple[float, str, int] | None]) -> None:
        while (item := await queue.get()) is not None:
            due, kind, i = item
            sent = time.monotonic()
            path, body = self.request(kind, i)
            error = None
            try:
                status = await asyncio.wait_for(conn.post(path, self.fleet.tokens[i], body), timeout=30)
                if status != 200:
                    error = f"HTTP {status}"
            except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as e:
                conn.close()
                error = type(e).__name__
            self.window.add(kind, time.monotonic() - due, sent - due, error, due)
        conn.close()

    async def run(self, seconds: float) -> Window:
        """Offer the load for ``seconds``; returns the window of what was measured."""
        queues: list[asyncio.Queue[tuple[float, str, int] | None]] = [asyncio.Queue() for _ in self.urls]
        workers = []
        for url, queue in zip(self.urls, queues, strict=True):
            host, port = url.removeprefix("http://").rsplit(":", 1)
            workers += [asyncio.create_task(self.worker(Connection(host, int(port)), queue))
                        for _ in range(self.CONNECTIONS)]
        start = time.monotonic() + 0.5
        cpu0 = cpu_seconds(self.server_pids)
        db0 = {pid: cpu_seconds([pid]) for pid in self.db_pids()}
        for due, kind, i in self.schedule(start, seconds):
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            queues[self._turn % len(queues)].put_nowait((due, kind, i))
            self._turn += 1
        for queue in queues:
            for _ in range(self.CONNECTIONS):
                queue.put_nowait(None)
        await asyncio.wait(workers, timeout=120)
        self.window.server_cpu = cpu_seconds(self.server_pids) - cpu0
        # PostgreSQL's backends come and go: those that lived through the window count their
        # difference, those born in it all their time (those that ended in it are not counted)
        self.window.db_cpu = sum(cpu_seconds([pid]) - db0.get(pid, 0.0) for pid in self.db_pids())
        window, self.window = self.window, Window()
        return window

    async def prime(self, agents: int) -> None:
        """Every agent calls ``next_run`` once, as fast as the connections go, unmeasured: a fleet
        that has been running for a while is known to its replica (its token cache, its rows in
        PostgreSQL's buffers); without this a step shorter than the poll interval would measure
        mostly agents calling for the first time."""
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        for i in range(agents):
            queue.put_nowait(i)

        async def worker(conn: Connection) -> None:
            while not queue.empty():
                i = queue.get_nowait()
                if i is None:
                    break
                path, body = self.request("next_run", i)
                with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError, TimeoutError):
                    await asyncio.wait_for(conn.post(path, self.fleet.tokens[i], body), timeout=60)
            conn.close()

        conns = []
        for url in self.urls:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            conns += [Connection(host, int(port)) for _ in range(8)]
        await asyncio.gather(*(worker(c) for c in conns))

    async def close(self) -> None:
        pass


def process_figures(pid: int) -> tuple[float, int]:
    """(RSS MiB, open file descriptors) of a process."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return rss / 2**20, len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (gone ones count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def postgres_pids(url: str) -> list[int]:
    """The cluster's postmaster and all its children (backends, writer, WAL...)."""
    import psycopg

    from e3backup.server.cluster.leader import libpq_conninfo

    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        status = Path(f"/proc/{int(row[0]) if row else 0}/status").read_text()  # while it lives
    postmaster = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("PPid:")))
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, StopIteration):
                st = Path(f"/proc/{entry}/status").read_text()
                if int(next(ln.split()[1] for ln in st.splitlines() if ln.startswith("PPid:"))) == postmaster:
                    children.append(int(entry))
    return [postmaster, *children]


def pg_connections(url: str) -> int:
    import psycopg

    from e3backup.server.cluster.leader import libpq_conninfo

    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()").fetchone()
        return int(row[0]) if row else 0


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def slow_seconds(w: Window, top: int = 5) -> str:
    """The seconds of the window whose calls waited longest: a stall shows as a run of them."""
    if not w.dues:
        return ""
    t0 = min(w.dues)
    worst: dict[int, float] = {}
    for due, latency in zip(w.dues, w.latencies, strict=True):
        sec = int(due - t0)
        worst[sec] = max(worst.get(sec, 0.0), latency)
    slow = sorted(worst.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"t={sec}s {lat * 1000:.0f} ms" for sec, lat in sorted(slow))


def line(label: str, w: Window, seconds: float) -> str:
    n = len(w.latencies)
    return (f"| {label} | {n} | {n / seconds:.0f} | {pct(w.latencies, 50) * 1000:.1f} | "
            f"{pct(w.latencies, 99) * 1000:.1f} | {max(w.latencies, default=0) * 1000:.0f} | "
            f"{pct(w.lags, 99) * 1000:.1f} | {w.errors}{' ' + str(w.error_kinds) if w.errors else ''} | "
            f"{w.server_cpu / max(n, 1) * 1000:.2f} | {w.db_cpu / max(n, 1) * 1000:.2f} |")


@contextlib.contextmanager
def with_database(args: argparse.Namespace) -> Iterator[str]:
    if args.database_url:
        yield args.database_url
        return
    import psycopg
    from tests.plugins.postgres import throwaway_cluster

    with throwaway_cluster() as pg:
        name = "load_" + uuid.uuid4().hex[:8]
        with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        yield pg.url(name)


def ramp(args: argparse.Namespace) -> None:
    sizes = [int(x) for x in args.agents.split(",")]
    with with_database(args) as url:
        fleet = prepare(url, max(sizes), args.active)
        base = Path(tempfile.mkdtemp(prefix="e3-load-"))
        with replicas(url, args.replicas, base) as procs:
            print(f"ramp: {args.replicas} replica(s) on PostgreSQL, poll {args.poll:g} s, "
                  f"{args.active:.0%} of agents active, {args.step_seconds:g} s per step; {uptime()}")
            print("| agents | requests | req/s | p50 ms | p99 ms | max ms | client lag p99 ms | errors "
                  "| server CPU ms/req | PostgreSQL CPU ms/req |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            # warm-up (imports on first use, pool connections, query caches), not reported
            asyncio.run(_run_and_close(Load([u for u, _ in procs], fleet, sizes[0], args.poll,
                                            [p.pid for _, p in procs], lambda: postgres_pids(url)), 10.0))
            if args.prime:
                asyncio.run(Load([u for u, _ in procs], fleet, max(sizes), args.poll, [], lambda: []).prime(max(sizes)))
            held = 0
            cpu_per_req: list[float] = []
            for size in sizes:
                load = Load([u for u, _ in procs], fleet, size, args.poll, [p.pid for _, p in procs],
                            lambda: postgres_pids(url))
                window = asyncio.run(_run_and_close(load, args.step_seconds))
                cpu_per_req.append(window.server_cpu / max(len(window.latencies), 1))
                print(line(str(size), window, args.step_seconds), flush=True)
                if args.timeline:
                    print(f"  slowest seconds: {slow_seconds(window)}", flush=True)
                if pct(window.latencies, 99) < TARGET_P99 and not window.errors:
                    held = size
            rss = [process_figures(p.pid)[0] for _, p in procs]
            # one replica is one Python process: at most one core, whatever the machine has
            per_agent = min(cpu_per_req) * (1 + 2 * args.active * args.poll / ACTIVE_PERIOD) / args.poll
            print(f"largest fleet with p99 < 200 ms and no error: {held} agents; server RSS "
                  f"{', '.join(f'{r:.0f}' for r in rss)} MiB; {uptime()}")
            print(f"CPU-bound ceiling of one replica process (one core, this request mix): "
                  f"{1 / per_agent:.0f} agents at a {args.poll:g} s poll")


def soak(args: argparse.Namespace) -> None:
    size = int(args.agents)
    with with_database(args) as url:
        fleet = prepare(url, size, args.active)
        base = Path(tempfile.mkdtemp(prefix="e3-soak-"))
        with replicas(url, args.replicas, base) as procs:
            pid = procs[0][1].pid
            print(f"soak: {size} agents, poll {args.poll:g} s, {args.replicas} replica(s), {args.seconds:g} s, "
                  f"sampled every {args.sample:g} s; {uptime()}")
            print("| t s | requests | req/s | p50 ms | p99 ms | max ms | client lag p99 ms | errors "
                  "| server CPU ms/req | PostgreSQL CPU ms/req | RSS MiB | fds | PG conns |")
            print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            load = Load([u for u, _ in procs], fleet, size, args.poll, [p.pid for _, p in procs],
                        lambda: postgres_pids(url))
            total = Window()
            elapsed = 0.0

            async def go() -> None:
                nonlocal elapsed
                while elapsed < args.seconds:
                    window = await load.run(args.sample)
                    elapsed += args.sample
                    total.latencies += window.latencies
                    total.errors += window.errors
                    rss, fds = process_figures(pid)
                    row = line(f"{elapsed:.0f}", window, args.sample)
                    print(f"{row} {rss:.0f} | {fds} | {pg_connections(url)} |", flush=True)
                await load.close()

            asyncio.run(go())
            print(f"soak total: {len(total.latencies)} requests, p99 {pct(total.latencies, 99) * 1000:.1f} ms, "
                  f"errors {total.errors}; {uptime()}")


async def _run_and_close(load: Load, seconds: float) -> Window:
    try:
        return await load.run(seconds)
    finally:
        await load.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    for name in ("ramp", "soak"):
        p = sub.add_parser(name)
        p.add_argument("--replicas", type=int, choices=(1, 2, 3), default=1)
        p.add_argument("--poll", type=float, default=60.0, help="seconds between an agent's next_run calls")
        p.add_argument("--active", type=float, default=0.01, help="fraction of agents running a backup")
        p.add_argument("--database-url", default=None, help="default: a throwaway PostgreSQL cluster")
    r = sub.choices["ramp"]
    r.add_argument("--agents", default="2500,5000,10000,20000", help="fleet sizes, comma-separated")
    r.add_argument("--step-seconds", type=float, default=20.0)
    r.add_argument("--timeline", action="store_true", help="print each step's slowest seconds (stalls)")
    r.add_argument("--no-prime", dest="prime", action="store_false",
                   help="skip the unmeasured first poll of every agent before the steps")
    s = sub.choices["soak"]
    s.add_argument("--agents", default="10000")
    s.add_argument("--seconds", type=float, default=600.0)
    s.add_argument("--sample", type=float, default=30.0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped: servers and cluster still cleaned up
    if args.mode == "ramp":
        ramp(args)
    else:
        soak(args)


if __name__ == "__main__":
    main()
