"""Recovery sessions: the bare-metal restore console's calls (``/api/recovery/...``).

A session token (``Authorization: Bearer``) is scoped to one restore run. Its expiry slides: each
of update_run, push_events, get_run_status, get_run_events and poll_cancel extends it to
now + 6 h, writing only when the current expiry is within 30 minutes. ``refresh_session`` does
the same explicitly and returns the new expiry.

    get_run          POST /api/recovery/get_run           RecoveryRunRequest -> RecoveryRunResponse
    update_run       POST /api/recovery/update_run        UpdateRunRequest -> UpdateRunResponse
    push_events      POST /api/recovery/push_events       PushEventsRequest -> PushEventsResponse
    get_run_status   POST /api/recovery/get_run_status    RecoveryRunRequest -> RunStatusView
    get_run_events   POST /api/recovery/get_run_events    RunEventsRequest -> RunEventsResponse
    poll_cancel      POST /api/recovery/poll_cancel       RecoveryRunRequest -> PollCancelResponse
    refresh_session  POST /api/recovery/refresh_session   RecoveryRunRequest -> RefreshSessionResponse
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from e3backup.api.agent import RunAssignment
from e3backup.api.common import EventLevel, Id

SESSION_EXTENSION_HOURS = 6
SESSION_REFRESH_THRESHOLD_MINUTES = 30


class RecoveryRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: Id


class RecoveryRunResponse(BaseModel):
    run: RunAssignment
    session_expires_at: datetime


class RunEventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: Id
    after_id: Id = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 200


class RunEventView(BaseModel):
    id: int
    seq: int | None
    ts: datetime
    code: str
    level: EventLevel
    message: str
    meaning: str = Field("", description="What the code means and what to check (events.meaning).")
    details: dict[str, Any] = Field(default_factory=dict)


class RunEventsResponse(BaseModel):
    events: list[RunEventView]


class PollCancelResponse(BaseModel):
    cancel_requested: bool


class RefreshSessionResponse(BaseModel):
    session_expires_at: datetime


__all__ = [
    "SESSION_EXTENSION_HOURS",
    "SESSION_REFRESH_THRESHOLD_MINUTES",
    "PollCancelResponse",
    "RecoveryRunRequest",
    "RecoveryRunResponse",
    "RefreshSessionResponse",
    "RunEventView",
    "RunEventsRequest",
    "RunEventsResponse",
]
