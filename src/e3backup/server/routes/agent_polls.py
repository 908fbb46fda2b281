"""The agents' polls (``next_run``, ``poll_commands``) answered below the web framework.

Nearly every request a fleet sends is an idle agent's poll, and most of its CPU went to the
framework (routing, dependency resolution, validation of the answer, exception layers), not to
the one indexed query the answer needs. This ASGI middleware sits inside the security
middlewares (body limit, security headers, request timing: they apply unchanged) and answers a
poll itself when everything about it is ordinary: a token the token cache knows, no query
parameter but ``kind``, a body that parses and validates. It calls the very handler functions
the routes call, so the answer and the database work are the same. Anything else (no or an
unknown token, a bad body, another path, an error while answering) goes to the app untouched,
the body replayed, and the app answers as it always did, errors included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import HTTPException
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from e3backup.api import paths
from e3backup.api.agent import NextRunRequest
from e3backup.api.common import RunKind
from e3backup.server.deps import AgentCaller
from e3backup.server.errors import ServiceError
from e3backup.server.security.tokens import hash_token
from e3backup.server.state import ServerState

MAX_POLL_BODY = 64 * 1024  # a poll's body is a few hundred bytes; larger ones take the app's path


class _Route:
    """What ``RequestTiming`` labels the request with (``scope["route"].path``)."""

    def __init__(self, path: str) -> None:
        self.path = path


class AgentPolls:
    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        from e3backup.server.routes import agent_api  # the handlers; routes import this package

        self.app = app
        self.state = state
        self._next_run = agent_api.handle_next_run
        self._poll_commands = agent_api.handle_poll_commands
        self._routes = {p: _Route(p) for p in (paths.AGENT_NEXT_RUN, paths.AGENT_POLL_COMMANDS)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path not in self._routes or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        caller = self._known_caller(scope)
        if caller is None:
            await self.app(scope, receive, send)
            return
        body, messages = await _read_body(receive)
        answer: Callable[[], Response] | None = None
        if body is not None:
            if path == paths.AGENT_POLL_COMMANDS:
                if not scope.get("query_string"):
                    answer = self._poll_commands_answer(caller)
            else:
                answer = self._next_run_answer(scope, caller, body)
        replay = _replaying(messages, receive)
        if answer is not None:
            try:
                response = await run_in_threadpool(answer)
            except (HTTPException, ServiceError):
                pass  # the app answers this one (its error handlers), doing the same work again
            else:
                scope["route"] = self._routes[path]
                await response(scope, replay, send)
                return
        await self.app(scope, replay, send)

    def _known_caller(self, scope: Scope) -> AgentCaller | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                token = token.strip()
                if scheme.lower() != "bearer" or not token:
                    return None
                token_hash = hash_token(token)
                known = self.state.agent_tokens.get(token_hash)
                if known is None:
                    return None  # the app looks it up (and fills the cache) or refuses it
                return AgentCaller(known.agent_id, known.tenant_id, token, token_hash, known.last_seen_at)
        return None

    def _poll_commands_answer(self, caller: AgentCaller) -> Callable[[], Response]:
        return lambda: self._poll_commands(self.state, caller)

    def _next_run_answer(self, scope: Scope, caller: AgentCaller, body: bytes) -> Callable[[], Response] | None:
        kind: RunKind | None = None
        for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            if name != "kind" or kind is not None or value not in RunKind._value2member_map_:
                return None
            kind = RunKind(value)
        request: NextRunRequest | None = None
        if body:
            if not _is_json(scope):
                return None
            try:
                parsed: Any = json.loads(body)
                request = NextRunRequest.model_validate(parsed) if parsed is not None else None
            except (ValueError, ValidationError):
                return None
        settings = self.state.settings
        gateway_base = None
        if settings.gateway_enabled:
            gateway_base = settings.gateway_url or str(Request(scope).base_url)
        return lambda: self._next_run(self.state, caller, gateway_base, request, None, kind)


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json"
    return False


async def _read_body(receive: Receive) -> tuple[bytes | None, list[Message]]:
    """The whole body (None if it is larger than a poll's), and the messages read to replay."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None, messages
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > MAX_POLL_BODY:
            return None, messages
        if not message.get("more_body", False):
            return b"".join(chunks), messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


__all__ = ["AgentPolls"]
