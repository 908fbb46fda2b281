"""The agent's side of the agent API: one method per call, pydantic models in and out.

Answers are mapped to errors once, here::

    AgentError
    ├── ServerUnavailable   no answer, 5xx or 429: try again later (the outbox keeps the data)
    └── ServerRefused       4xx: this request will never succeed as it is (``status``, ``detail``)
        └── AuthRejected    401/403: the agent token is unknown or revoked

Transient failures are retried ``attempts`` times with exponential backoff; the wait goes
through ``sleep`` so a stopping agent (or a test) does not sit in it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..api import paths
from ..api.agent import (
    CommandAck,
    CommandView,
    DiskReport,
    DiskReportResponse,
    EnrollRequest,
    EnrollResponse,
    NextRunRequest,
    NextRunResponse,
    PollCommandsResponse,
    PushEventsRequest,
    PushEventsResponse,
    UpdateEvent,
    UpdateRunRequest,
    UpdateRunResponse,
)
from ..api.common import Engine
from ..api.proofs import ProofReport, ProofView
from ..buildinfo import platform_tag
from ..buildinfo import version as build_version
from ..errors import E3Error
from .transport import Transport, TransportError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


class AgentError(E3Error):
    pass


class ServerUnavailable(AgentError):
    pass


class ServerRefused(AgentError):
    def __init__(self, path: str, status: int, detail: str) -> None:
        super().__init__(f"{path}: server refused ({status}): {detail}")
        self.path = path
        self.status = status
        self.detail = detail

    def __reduce__(self) -> tuple[type, tuple[str, int, str]]:
        return (type(self), (self.path, self.status, self.detail))


class AuthRejected(ServerRefused):
    pass


class MalformedRun(AgentError):
    """``next_run`` handed out a run the agent cannot even parse (unknown engine, bad types,
    absurd sizes). ``run_id`` is set when the payload names one, so it can be refused."""

    def __init__(self, run_id: int | None, reason: str) -> None:
        super().__init__(f"malformed run {run_id}: {reason}")
        self.run_id = run_id
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[int | None, str]]:
        return (type(self), (self.run_id, self.reason))


MAX_RUN_PAYLOAD = 1 << 20  # bytes of JSON; a real run is a few KiB


def _detail(body: Any) -> str:
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:500]
    return str(body)[:500]


def _payload(body: BaseModel) -> Any:
    """The JSON body. Only a run update is partial (send what changed); every other body goes
    whole, so a list filled with ``append()`` (which pydantic counts as unset) is sent too."""
    return body.model_dump(mode="json", exclude_unset=isinstance(body, UpdateRunRequest))


class ServerClient:
    def __init__(
        self,
        transport: Transport,
        agent_token: str | None = None,
        attempts: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], object] = time.sleep,
        on_contact: Callable[[], None] | None = None,
    ) -> None:
        self.transport = transport
        self._token = agent_token
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.sleep = sleep
        self.on_contact = on_contact

    def __repr__(self) -> str:
        return f"ServerClient({self.transport!r})"

    # -- plumbing -------------------------------------------------------------------------------

    def _post(self, path: str, body: BaseModel | None, out: type[M], params: dict[str, Any] | None = None,
              attempts: int | None = None) -> M:
        return out.model_validate(self._call(path, body, params, attempts))

    def _call(self, path: str, body: BaseModel | None, params: dict[str, Any] | None = None,
              attempts: int | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        payload = _payload(body) if body is not None else None
        tries = attempts or self.attempts
        for attempt in range(tries):
            try:
                r = self.transport.request("POST", path, json=payload, headers=headers, params=params)
            except TransportError as e:
                error: AgentError = ServerUnavailable(f"server unreachable: {e}")
            else:
                if r.status < 400:
                    if self.on_contact is not None:
                        self.on_contact()
                    return r.body
                if r.status in (401, 403):
                    raise AuthRejected(path, r.status, _detail(r.body))
                if r.status < 500 and r.status != 429:
                    raise ServerRefused(path, r.status, _detail(r.body))
                error = ServerUnavailable(f"{path}: server answered {r.status}: {_detail(r.body)}")
            if attempt + 1 < tries:
                self.sleep(min(self.backoff * 2**attempt, 30.0))
        raise error

    # -- the calls --------------------------------------------------------------------------------

    def enroll(self, enrollment_token: str, hostname: str, os_name: str, os_version: str = "",
               engines: list[Engine] | None = None, platform: str | None = None) -> EnrollResponse:
        req = EnrollRequest(enrollment_token=enrollment_token, hostname=hostname, os=os_name,
                            os_version=os_version[:255], agent_version=build_version(), engines=engines,
                            platform=platform)
        return self._post(paths.AGENT_ENROLL, req, EnrollResponse)

    def next_run(self, run_id: int | None = None, kind: str | None = None, os_version: str | None = None,
                 engines: list[Engine] | None = None, platform: str | None = None, self_update: bool = False,
                 update_event: UpdateEvent | None = None) -> NextRunResponse:
        params: dict[str, Any] = {}
        if run_id is not None:
            params["run_id"] = run_id
        if kind is not None:
            params["kind"] = kind
        req = NextRunRequest(agent_version=build_version(), os_version=os_version, engines=engines, platform=platform,
                             build_platform=platform_tag(), self_update=self_update, update_event=update_event)
        body = self._call(paths.AGENT_NEXT_RUN, req, params=params or None)
        run = body.get("run") if isinstance(body, dict) else None
        run_id = run.get("run_id") if isinstance(run, dict) else None
        run_id = run_id if isinstance(run_id, int) and not isinstance(run_id, bool) else None
        size = len(json.dumps(body))
        if size > MAX_RUN_PAYLOAD:
            raise MalformedRun(run_id, f"payload of {size} bytes (limit {MAX_RUN_PAYLOAD})")
        try:
            return NextRunResponse.model_validate(body)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"][1:]) or "run"
            raise MalformedRun(run_id, f"{where}: {first['msg']}") from None

    def download(self, path: str, dest: Path) -> None:
        """A file from the server (a self-update release), with this agent's token."""
        download = getattr(self.transport, "download", None)
        if download is None:
            raise AgentError("this transport cannot download files")
        try:
            download(path, dest, {"Authorization": f"Bearer {self._token}"} if self._token else {})
        except TransportError as e:
            raise ServerUnavailable(str(e)) from None

    def update_run(self, req: UpdateRunRequest, attempts: int | None = None) -> UpdateRunResponse:
        return self._post(paths.AGENT_UPDATE_RUN, req, UpdateRunResponse, attempts=attempts)

    def push_events(self, req: PushEventsRequest) -> PushEventsResponse:
        return self._post(paths.AGENT_PUSH_EVENTS, req, PushEventsResponse)

    def poll_commands(self) -> PollCommandsResponse:
        return self._post(paths.AGENT_POLL_COMMANDS, None, PollCommandsResponse)

    def ack_command(self, ack: CommandAck) -> CommandView:
        return self._post(paths.AGENT_ACK_COMMAND, ack, CommandView)

    def report_disks(self, report: DiskReport) -> DiskReportResponse:
        return self._post(paths.AGENT_REPORT_DISKS, report, DiskReportResponse)

    def report_proof(self, report: ProofReport) -> ProofView:
        return self._post(paths.AGENT_REPORT_PROOF, report, ProofView)


__all__ = [
    "MAX_RUN_PAYLOAD",
    "AgentError",
    "AuthRejected",
    "MalformedRun",
    "ServerClient",
    "ServerRefused",
    "ServerUnavailable",
]
