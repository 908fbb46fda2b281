"""The server on a real socket: uvicorn in a thread (in-process, for tests that look inside the
app) or the ``e3backup server`` command as a child process (for tests that measure it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any, port: int | None = None, **config: Any) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1, **config)
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    scheme = "https" if config.get("ssl_certfile") else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def server_process(data_dir: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``e3backup server`` as a child process; yields its URL and process once /healthz answers."""
    with server_processes([data_dir], *args) as [(url, proc)]:
        yield url, proc


@contextmanager
def server_processes(data_dirs: list[Path], *args: str) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    """One ``e3backup server`` per data directory, started together (replicas start in
    parallel); yields their URLs and processes once each answers /healthz."""
    started: list[tuple[str, subprocess.Popen[bytes], Path, Any]] = []
    try:
        for data_dir in data_dirs:
            port = free_port()
            log_path = data_dir.parent / f"server-{port}.log"
            log = log_path.open("wb")
            command = [sys.executable, "-m", "e3backup", "server", "--data-dir", str(data_dir)]
            proc = subprocess.Popen(
                [*command, "--listen", f"127.0.0.1:{port}", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            started.append((f"http://127.0.0.1:{port}", proc, log_path, log))
        deadline = time.monotonic() + 120  # generous: a loaded CI machine starts Python slowly
        for url, proc, log_path, _log in started:
            while True:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the server did not answer /healthz"
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        yield [(url, proc) for url, proc, _, _ in started]
    finally:
        for _, proc, _, _ in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc, _, log in started:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def rss_bytes(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]
