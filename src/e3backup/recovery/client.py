"""The recovery console's side of ``/api/recovery/...``: the agent's client, on a session token.

``RecoveryClient`` is a ``ServerClient`` (same error mapping, retries and backoff) whose
``update_run`` and ``push_events`` go to the recovery endpoints, so the agent's ``Outbox`` and
``RunReporter`` deliver the console's events and final status unchanged. ``redeem`` turns the
one-time code into the session token; it needs no token itself.
"""

from __future__ import annotations

from pydantic import BaseModel

from ..agent.client import ServerClient
from ..agent.transport import Transport
from ..api import paths
from ..api.agent import PushEventsRequest, PushEventsResponse, UpdateRunRequest, UpdateRunResponse
from ..api.recovery import PollCancelResponse, RecoveryRunRequest, RecoveryRunResponse, RefreshSessionResponse


class Redeemed(BaseModel):
    run_id: int
    session_token: str
    session_expires_at: str


class _Code(BaseModel):
    code: str


class RecoveryClient(ServerClient):
    def __init__(self, transport: Transport, session_token: str | None = None, **kw: object) -> None:
        super().__init__(transport, session_token, **kw)  # type: ignore[arg-type]
        self.run_id = 0

    def __repr__(self) -> str:
        return f"RecoveryClient({self.transport!r})"

    def redeem(self, code: str) -> Redeemed:
        """Sign in with the code (used up by this call); the client keeps the session token."""
        answer = self._post(paths.RECOVERY_REDEEM, _Code(code=code), Redeemed, attempts=1)
        self._token, self.run_id = answer.session_token, answer.run_id
        return answer

    def _run(self) -> RecoveryRunRequest:
        return RecoveryRunRequest(run_id=self.run_id)

    def get_run(self) -> RecoveryRunResponse:
        return self._post(paths.RECOVERY_GET_RUN, self._run(), RecoveryRunResponse)

    def update_run(self, req: UpdateRunRequest, attempts: int | None = None) -> UpdateRunResponse:
        return self._post(paths.RECOVERY_UPDATE_RUN, req, UpdateRunResponse, attempts=attempts)

    def push_events(self, req: PushEventsRequest) -> PushEventsResponse:
        return self._post(paths.RECOVERY_PUSH_EVENTS, req, PushEventsResponse)

    def poll_cancel(self) -> PollCancelResponse:
        return self._post(paths.RECOVERY_POLL_CANCEL, self._run(), PollCancelResponse, attempts=1)

    def refresh_session(self) -> RefreshSessionResponse:
        return self._post(paths.RECOVERY_REFRESH_SESSION, self._run(), RefreshSessionResponse, attempts=1)


__all__ = ["RecoveryClient", "Redeemed"]
