"""The server reading through its own gateway, in-process: ``RestStore``'s pool, answered by the
gateway's ASGI app instead of a socket.

A dashboard request that reads a gateway-mode repository (browse, preview, downloads) opens it
as ``rest:`` with a read-only token (``services.repository_access``); every call then goes
through the gateway's authorisation and append-only rules exactly as an agent's or the recovery
console's does, so that request can read but never write or delete. No socket is involved: the
server needs no route to its own public URL (a load balancer, TLS with a private CA) and the
token never leaves the process.

``bound()`` is called in the request's worker thread (a sync route, a streamed response's
iterator) and remembers the server's event loop; calls from any thread (the repository reads
with threads of its own) then run the gateway on that loop (``anyio.from_thread``). The gateway's
blocking work runs on its own thread limiter, so waiting dashboard threads cannot starve it.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import anyio.from_thread
import urllib3
from anyio.lowlevel import EventLoopToken, current_token

Message = MutableMapping[str, Any]
App = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
               Awaitable[None]]

BASE_URL = "http://gateway.in-process"  # never resolved: only its path reaches the gateway


class InProcessPool:
    """``urllib3.PoolManager.request`` for ``RestStore``, answered by ``app`` (the gateway)."""

    def __init__(self, app: App, token: EventLoopToken | None = None) -> None:
        self._app = app
        self._token = token

    def bound(self) -> InProcessPool:
        """This pool tied to the running server's event loop; call from one of its worker threads."""
        return InProcessPool(self._app, anyio.from_thread.run_sync(current_token))

    def request(self, method: str, url: str, body: Any = None, fields: Any = None,
                headers: Any = None, json: Any = None, **urlopen_kw: Any) -> urllib3.BaseHTTPResponse:
        parts = urlsplit(url)
        if body is None:
            data = b""
        elif isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body)
        else:  # a readable stream (an upload): the gateway reads it in one message
            data = body.read()
        pairs = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (headers or {}).items()]
        if data and not any(k == b"content-length" for k, _ in pairs):
            pairs.append((b"content-length", str(len(data)).encode()))
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": parts.path, "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(), "headers": pairs, "client": ("127.0.0.1", 0),
            "server": ("gateway.in-process", 80),
        }
        if self._token is None:
            raise RuntimeError("InProcessPool.request on an unbound pool (bound() first)")
        return anyio.from_thread.run(self._call, scope, data, token=self._token)

    async def _call(self, scope: dict[str, Any], data: bytes) -> urllib3.BaseHTTPResponse:
        sent = False
        status = 500
        headers: list[tuple[str, str]] = []
        pieces: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers.extend((k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", []))
            elif message["type"] == "http.response.body":
                pieces.append(bytes(message.get("body", b"")))

        await self._app(scope, receive, send)
        return urllib3.HTTPResponse(body=io.BytesIO(b"".join(pieces)), headers=urllib3.HTTPHeaderDict(headers),
                                    status=status, reason="", preload_content=True, decode_content=False)

    def clear(self) -> None:
        """Nothing to close: no connection is kept."""


__all__ = ["BASE_URL", "InProcessPool"]
