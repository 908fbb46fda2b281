"""A bounded load test of oversized and malformed bodies against the real server process.

Before the body limits, anonymous 100 MiB bodies raised the server from 0.7 to 2 GiB (they were
read and parsed before the token check). Now 8 clients at once send, again and again, 100 MiB
bodies (declared and chunked, anonymous, with a forged token and with a real agent token),
bodies just under the agent limit, and malformed JSON; the server answers every one with a
4xx, stays up, and its peak resident memory (VmHWM of the ``e3backup server`` process) stays
under ``CEILING``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from click.testing import CliRunner

from e3backup.cli.server_cmd import server
from tests.server.live import rss_bytes, server_process

MIB = 1024 * 1024
CEILING = 320 * MIB  # peak RSS of the whole server process under this load (measured: 168-203 MiB)
CLIENTS = 8
ROUNDS = 3


def _stream(total: int, chunk: int = MIB) -> Iterator[bytes]:
    piece = b" " * chunk
    for _ in range(total // chunk):
        yield piece


def _events_body(size: int) -> bytes:
    """Valid JSON of many small events, ``size`` bytes: the costliest body to parse."""
    event = json.dumps({"seq": 1, "code": "REPOSITORY_OPENED", "message": "m"}).encode()
    count = size // (len(event) + 1)
    return b'{"run_id": 1, "events": [' + b",".join([event] * count) + b"]}"


def test_oversized_and_malformed_bodies_keep_memory_bounded(tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = CliRunner().invoke(server, ["--data-dir", str(data), "create-tenant", "--name", "Acme"])
    assert r.exit_code == 0, r.output
    enrollment = r.output.split("enrollment token: ")[1].strip()
    with server_process(data) as (url, proc):
        enrolled = httpx.post(
            f"{url}/api/agent/enroll", json={"enrollment_token": enrollment, "hostname": "h", "os": "linux"}
        )
        assert enrolled.status_code == 201, enrolled.text
        agent = {"Authorization": f"Bearer {enrolled.json()['agent_token']}", "Content-Type": "application/json"}
        forged = {"Authorization": "Bearer e3a_forged", "Content-Type": "application/json"}
        anonymous = {"Content-Type": "application/json"}
        for _ in range(3):  # warm up: imports, connections, the first queries
            httpx.post(f"{url}/api/auth/login", json={"email": "a@b.example", "password": "x"})
        _, baseline_peak = rss_bytes(proc.pid)
        near_limit = _events_body(7 * MIB)
        calls: list[tuple[str, str, Callable[[], object], dict[str, str]]] = [
            ("declared 100 MiB, login", "/api/auth/login", lambda: _stream(100 * MIB),
             {**anonymous, "Content-Length": str(100 * MIB)}),
            ("chunked 100 MiB, login", "/api/auth/login", lambda: _stream(100 * MIB), anonymous),
            ("chunked 100 MiB, forged token", "/api/agent/push_events", lambda: _stream(100 * MIB), forged),
            ("chunked 100 MiB, agent", "/api/agent/push_events", lambda: _stream(100 * MIB), agent),
            ("7 MiB of events, agent", "/api/agent/push_events", lambda: near_limit, agent),
            ("7 MiB of events, forged token", "/api/agent/next_run", lambda: near_limit, forged),
            ("nested JSON, login", "/api/auth/login", lambda: b"[" * (MIB - 1), anonymous),
            ("truncated JSON, agent", "/api/agent/report_disks", lambda: b'{"disks": [' * 50_000, agent),
        ]
        jobs = [call for call in calls for _ in range(ROUNDS)]

        def send(call: tuple[str, str, Callable[[], object], dict[str, str]]) -> tuple[str, int | str]:
            name, path, body, headers = call
            try:
                with httpx.Client(base_url=url, timeout=120) as c:
                    return name, c.post(path, content=body(), headers=headers).status_code  # type: ignore[arg-type]
            except httpx.TransportError as e:  # refused while still sending: the server closed
                return name, type(e).__name__

        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(send, jobs))
        assert proc.poll() is None
        assert httpx.get(f"{url}/healthz").status_code == 200
        _, peak = rss_bytes(proc.pid)
    for name, status in results:
        assert status != 500 and (isinstance(status, str) or 400 <= status < 500), (name, status)
    by_name = {name: {s for n, s in results if n == name} for name, _ in results}
    assert by_name["chunked 100 MiB, agent"] <= {413, "WriteError", "RemoteProtocolError", "ReadError"}
    assert by_name["7 MiB of events, forged token"] <= {413, "WriteError", "RemoteProtocolError", "ReadError"}
    assert by_name["7 MiB of events, agent"] == {422}  # parsed (known agent), refused by size rules
    print(f"peak RSS {peak / MIB:.0f} MiB (before the load {baseline_peak / MIB:.0f} MiB), ceiling {CEILING / MIB:.0f}")
    assert peak < CEILING, f"peak RSS {peak / MIB:.0f} MiB"
