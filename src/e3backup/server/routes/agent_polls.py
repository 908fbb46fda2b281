"""The agents' polls (``next_run``, ``poll_commands``) answered below the web framework.

Nearly every request a fleet sends is an idle agent's poll, and most of its CPU went to the
framework (routing, dependency resolution, validation of the answer, exception layers), not to
the one indexed query the answer needs. This ASGI middleware sits inside the security
middlewares (body limit, security headers, request timing: they apply unchanged) and answers a
poll itself when everything about it is ordinary: a live agent's token (the token cache's, or
looked up once, together with other first calls: ``agent_lookups``), no query parameter but
``kind``, a body that parses and validates. Polls that arrive together are checked together for
work (``poll_batches``: one statement records their contact and finds which have a queued run or
a pending command); an idle one gets the constant idle answer, and one with work is answered by
the very handler function the route calls, so a run is claimed exactly as the route claims it.
Anything else (no or an unknown token, a bad body, another path,
a revoked agent, an error while answering) goes to the app untouched, the body replayed, and
the app answers as it always did, errors included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import HTTPException
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from e3backup.api import paths
from e3backup.api.agent import NextRunRequest, NextRunResponse, PollCommandsResponse
from e3backup.api.common import RunKind
from e3backup.server.deps import AgentCaller
from e3backup.server.errors import ServiceError
from e3backup.server.routes.agent_lookups import AgentLookups
from e3backup.server.routes.poll_batches import PollBatcher
from e3backup.server.security.tokens import hash_token
from e3backup.server.services.idle_check import Verdict
from e3backup.server.state import ServerState

MAX_POLL_BODY = 64 * 1024  # a poll's body is a few hundred bytes; larger ones take the app's path
JSON = "application/json"
_IDLE_RUN = NextRunResponse(run=None, update=None).model_dump_json().encode()
_IDLE_COMMANDS = PollCommandsResponse(commands=[]).model_dump_json().encode()


class _Route:
    """What ``RequestTiming`` labels the request with (``scope["route"].path``)."""

    def __init__(self, path: str) -> None:
        self.path = path


class AgentPolls:
    def __init__(self, app: ASGIApp, state: ServerState, batcher: PollBatcher, lookups: AgentLookups) -> None:
        from e3backup.server.routes import agent_api  # the handlers; routes import this package

        self.app = app
        self.state = state
        self._next_run = agent_api.handle_next_run
        self._poll_commands = agent_api.handle_poll_commands
        self._routes = {p: _Route(p) for p in (paths.AGENT_NEXT_RUN, paths.AGENT_POLL_COMMANDS)}
        self.batcher = batcher
        self.lookups = lookups

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path not in self._routes or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        caller = await self._caller(scope)
        if caller is None:
            await self.app(scope, receive, send)  # no token, or an unknown one: the app's 401
            return
        body, messages = await _read_body(receive)
        replay = _replaying(messages, receive)
        poll = None
        if body is not None:
            if path == paths.AGENT_POLL_COMMANDS:
                poll = _Ordinary(True, None, None) if not scope.get("query_string") else None
            else:
                poll = _next_run_poll(scope, body)
        if poll is None:
            await self.app(scope, replay, send)
            return
        verdict = await self.batcher.check(caller, poll.commands, poll.kind, poll.body)
        if verdict is Verdict.REFUSED:
            await self.app(scope, replay, send)  # revoked since its token was cached: the app's 401
            return
        if verdict is Verdict.IDLE:
            response = Response(_IDLE_COMMANDS if poll.commands else _IDLE_RUN, media_type=JSON)
        else:  # work to hand out (or the check failed): the handler, alone, as without batching
            try:
                response = await run_in_threadpool(self._answer(scope, caller, poll))
            except (HTTPException, ServiceError):
                await self.app(scope, replay, send)  # the app answers this one (its error handlers)
                return
        scope["route"] = self._routes[path]
        await response(scope, replay, send)

    def _answer(self, scope: Scope, caller: AgentCaller, poll: _Ordinary) -> Callable[[], Response]:
        if poll.commands:
            return lambda: self._poll_commands(self.state, caller)
        settings = self.state.settings
        gateway_base = None
        if settings.gateway_enabled:
            gateway_base = settings.gateway_url or str(Request(scope).base_url)
        return lambda: self._next_run(self.state, caller, gateway_base, poll.body, None, poll.kind)

    async def _caller(self, scope: Scope) -> AgentCaller | None:
        """The calling agent from the token cache, or looked up once (an agent's first call to
        this process: after a restart, every agent's; together with the others arriving then),
        so that its poll is checked with the others rather than taking the framework's slower
        path."""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                token = token.strip()
                if scheme.lower() != "bearer" or not token:
                    return None
                token_hash = hash_token(token)
                known = self.state.agent_tokens.get(token_hash)
                if known is None:
                    return await self.lookups.look_up(token, token_hash)
                return AgentCaller(known.agent_id, known.tenant_id, token, token_hash, known.last_seen_at)
        return None


@dataclass(frozen=True)
class _Ordinary:
    """A poll the middleware answers: which call, and what a ``next_run`` asked."""

    commands: bool
    kind: RunKind | None
    body: NextRunRequest | None


def _next_run_poll(scope: Scope, body: bytes) -> _Ordinary | None:
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
    return _Ordinary(False, kind, request)


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
