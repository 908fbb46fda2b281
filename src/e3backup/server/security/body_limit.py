"""Request bodies are bounded before anything parses them.

A body larger than the limit is refused with 413 as soon as that is known: at once from its
``Content-Length``, or while it streams in (chunked uploads), so an anonymous 100 MiB upload
costs the server at most one limit's worth of memory. Agents and the recovery console send
larger bodies (event batches, disk reports, command results) than people do (forms, job
definitions), so their paths get their own, larger limit, once their token is known.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

AGENT_PREFIXES = ("/api/agent/", "/api/recovery/")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` while a body streams in; an HTTPException so that FastAPI's body
    parsing passes it on (it turns other errors into a 400) and the app answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {limit} bytes")


class BodyLimit:
    """``user_limit`` for every body; ``agent_limit`` on the agent and console paths, but only
    once the body outgrows ``user_limit`` and ``known_bearer`` confirms the caller's token (one
    indexed lookup): an anonymous caller never gets the larger budget.

    Parsed JSON takes several times its size in memory, so at most ``large_slots`` bodies
    larger than ``user_limit`` are read and handled at once; others wait their turn.
    """

    def __init__(
        self,
        app: ASGIApp,
        user_limit: int,
        agent_limit: int,
        known_bearer: Callable[[str], Awaitable[bool]],
        large_slots: int = 2,
    ) -> None:
        self.app = app
        self.large = asyncio.Semaphore(large_slots)
        self.user_limit = user_limit
        self.agent_limit = agent_limit
        self.known_bearer = known_bearer

    async def _limit_beyond_user(self, scope: Scope) -> int:
        """The limit for a body larger than ``user_limit``."""
        if not str(scope.get("path", "")).startswith(AGENT_PREFIXES):
            return self.user_limit
        token = _bearer(scope)
        if token and await self.known_bearer(token):
            return self.agent_limit
        return self.user_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.user_limit
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            limit = await self._limit_beyond_user(scope)
            if declared > limit:
                await _refuse(send, limit)
                return
        received = 0
        widened = limit != self.user_limit
        slot = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, limit, widened, slot
            if widened and not slot:
                await self.large.acquire()
                slot = True
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not widened:
                    widened, limit = True, await self._limit_beyond_user(scope)
                    if limit > self.user_limit:
                        await self.large.acquire()
                        slot = True
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(send, limit)
        finally:
            if slot:
                self.large.release()


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["AGENT_PREFIXES", "BodyLimit", "BodyTooLarge"]
