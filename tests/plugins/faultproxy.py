"""A fault-injecting HTTP/1.1 proxy for S3 tests (pytest plugin), loopback only.

It sits in front of the real S3 server and, for a configurable fraction of requests, answers
503 SlowDown or 500 InternalError with S3's XML error body, resets the connection while reading
the request or in the middle of the response, or delays the request. Everything else is
forwarded unchanged, including the Host header, so SigV4 signatures still verify upstream.
Faults are drawn from a seeded RNG; ``counts`` says what was injected, so a test can check that
faults really happened. Bounded: at most ``max_connections`` client connections, socket timeouts.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from tests.plugins.seaweedfs import SeaweedServer

_HOP_BY_HOP = {"connection", "keep-alive", "expect", "proxy-connection", "te", "trailer",
               "transfer-encoding", "upgrade"}
_MAX_HEAD = 64 * 1024
_ERRORS = {
    503: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
}


@dataclass(frozen=True)
class Faults:
    """Fractions (0..1) of requests that get each fault; they are tried in this order."""

    slowdown: float = 0.0        # 503 SlowDown
    error500: float = 0.0        # 500 InternalError
    reset_request: float = 0.0   # connection reset after the request head (body unread)
    reset_response: float = 0.0  # forwarded, then reset halfway through the response
    delay: float = 0.0           # forwarded after ``delay_seconds``
    delay_seconds: float = 0.05
    only_paths: str = ""         # faults only for request paths containing this (e.g. "/data/")
    after: int = 0               # ... and only once this many such requests were forwarded


class FaultProxy:
    """Listen on 127.0.0.1:<free port> and forward to ``upstream`` (``host``, ``port``)."""

    def __init__(self, upstream: tuple[str, int], *, seed: int = 1, max_connections: int = 64,
                 timeout: float = 30.0, tls: ssl.SSLContext | None = None) -> None:
        if upstream[0] not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fault proxy forwards to loopback only")
        self.upstream = upstream
        self.faults = Faults()
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._timeout = timeout
        self._open: set[socket.socket] = set()
        self._tls = tls
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self.endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy",
                                        daemon=True)
        self._thread.start()

    def set(self, **faults: Any) -> None:
        """Change the fault mix, e.g. ``set(slowdown=0.2, reset_response=0.05)``; ``counts["matched"]``
        (the requests ``only_paths`` matched, the count ``after`` looks at) starts again at 0."""
        with self._lock:
            self.faults = replace(Faults(), **faults)
            self.counts["matched"] = 0

    def url(self, bucket: str, prefix: str = "") -> str:
        tail = f"/{prefix.strip('/')}" if prefix.strip("/") else ""
        return f"s3:{self.endpoint}/{bucket}{tail}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            socks = list(self._open)
        for s in socks:
            _reset(s)

    # -- per connection -----------------------------------------------------------------------

    def _draw(self, target: str) -> str:
        f = self.faults
        if f.only_paths and f.only_paths not in target:
            return "forward"
        with self._lock:
            self.counts["matched"] += 1
            if self.counts["matched"] <= f.after:
                return "forward"
            x = self._rng.random()
        for name in ("slowdown", "error500", "reset_request", "reset_response", "delay"):
            p = getattr(f, name)
            if x < p:
                return name
            x -= p
        return "forward"

    def _serve(self, client: socket.socket) -> None:
        if not self._slots.acquire(blocking=False):
            _reset(client)
            return
        client.settimeout(self._timeout)
        if self._tls is not None:
            try:
                client = self._tls.wrap_socket(client, server_side=True)
            except (OSError, ssl.SSLError):
                _reset(client)
                self._slots.release()
                return
        with self._lock:
            self._open.add(client)
        upstream = http.client.HTTPConnection(*self.upstream, timeout=self._timeout)
        try:
            rfile = client.makefile("rb")
            while self._one_request(client, rfile, upstream):
                pass
        except (OSError, http.client.HTTPException):
            _reset(client)
        finally:
            upstream.close()
            with self._lock:
                self._open.discard(client)
            client.close()
            self._slots.release()

    def _one_request(self, client: socket.socket, rfile: Any,
                     upstream: http.client.HTTPConnection) -> bool:
        """Handle one request; False when the connection is finished."""
        line = rfile.readline(_MAX_HEAD)
        if not line.strip():
            return False
        method, target, _version = line.decode("latin-1").split(" ", 2)
        headers: list[tuple[str, str]] = []
        size = len(line)
        while True:
            h = rfile.readline(_MAX_HEAD)
            size += len(h)
            if size > _MAX_HEAD:
                raise OSError("request head too large")
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        lower = {k.lower(): v for k, v in headers}
        if "chunked" in lower.get("transfer-encoding", "").lower():
            raise OSError("chunked request bodies are not supported by the fault proxy")
        length = int(lower.get("content-length", "0") or 0)
        keep_alive = lower.get("connection", "").lower() != "close"

        fault = self._draw(target)
        with self._lock:
            self.counts[fault] += 1
            self.counts["requests"] += 1
        if fault in ("slowdown", "error500"):
            status = 503 if fault == "slowdown" else 500
            if "expect" not in lower:
                rfile.read(length)  # drain; with 100-continue the client never sends it
                _send_error(client, status, target, keep_alive)
                return keep_alive
            _send_error(client, status, target, False)
            return False
        if fault == "reset_request":
            rfile.read(length // 2)
            _reset(client)
            return False
        if "100-continue" in lower.get("expect", "").lower():
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = rfile.read(length) if length else b""
        if len(body) != length:
            return False
        if fault == "delay":
            time.sleep(self.faults.delay_seconds)  # the injected fault itself

        upstream.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            if k.lower() not in _HOP_BY_HOP:
                upstream.putheader(k, v)
        upstream.endheaders(body if body else None)
        resp = upstream.getresponse()
        data = resp.read()
        out = [f"HTTP/1.1 {resp.status} {resp.reason}\r\n".encode("latin-1")]
        for k, v in resp.getheaders():
            if k.lower() in _HOP_BY_HOP or (k.lower() == "content-length" and method != "HEAD"):
                continue
            out.append(f"{k}: {v}\r\n".encode("latin-1"))
        if method != "HEAD":
            out.append(f"Content-Length: {len(data)}\r\n".encode())
        if not keep_alive:
            out.append(b"Connection: close\r\n")
        out.append(b"\r\n")
        head = b"".join(out)
        if fault == "reset_response":
            client.sendall(head + data[: len(data) // 2] if data else b"")
            _reset(client)
            return False
        client.sendall(head + data)
        return keep_alive


def _send_error(client: socket.socket, status: int, resource: str, keep_alive: bool) -> None:
    code, message = _ERRORS[status]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{resource.split('?', 1)[0]}</Resource><RequestId>faultproxy</RequestId></Error>"
    ).encode()
    reason = "Slow Down" if status == 503 else "Internal Server Error"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n" + ("" if keep_alive else "Connection: close\r\n") + "\r\n"
    ).encode()
    client.sendall(head + body)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped connection looks to the client."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


@pytest.fixture
def fault_proxy(s3_server: SeaweedServer) -> Iterator[FaultProxy]:
    """A fresh fault proxy in front of the session's S3 server (no faults until ``set``)."""
    proxy = FaultProxy(("127.0.0.1", s3_server.port))
    try:
        yield proxy
    finally:
        proxy.close()
