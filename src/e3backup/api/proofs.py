"""Proof of restore, as the agent reports it and the server shows it (``docs/proof.md``).

    report proof    POST /api/agent/report_proof    ProofReport -> ProofView

A proof belongs to the backup run whose snapshot it proved. ``kind`` says how it was proven:
``boot`` (the image was booted and showed a sign of life; ``screenshot_png`` holds the screen),
``fsck`` (each partition's file system checked read-only and a sample of its files read) or
``files`` (a random sample of files restored and hashed against the snapshot).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from e3backup.api.common import Id

ProofKind = Literal["boot", "fsck", "files"]
Verdict = Literal["passed", "failed"]
MAX_SCREENSHOT = 4 << 20
"""Bytes of PNG; a 1024x768 console screen is a few KiB to a few hundred."""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ProofCheck(BaseModel):
    """One thing the proof looked at (a partition's checker, the sample, the boot)."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(max_length=200)]
    ok: bool
    detail: Annotated[str, Field(max_length=2000)] = ""


class ProofReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: Id = Field(description="The backup run whose snapshot was proven.")
    snapshot_id: Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[0-9a-f]+$")]
    kind: ProofKind
    verdict: Verdict
    reason: Annotated[str, Field(max_length=4000)] = Field("", description="Why it failed; empty when passed.")
    started_at: AwareDatetime
    finished_at: AwareDatetime
    checks: Annotated[list[ProofCheck], Field(max_length=200)] = Field(default_factory=list)
    screenshot_png: Annotated[str, Field(max_length=(MAX_SCREENSHOT * 4) // 3 + 8)] | None = Field(
        None, description="The guest's screen as a base64 PNG (boot proofs)."
    )

    @field_validator("screenshot_png")
    @classmethod
    def _png(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                raw = base64.b64decode(value, validate=True)
            except binascii.Error:
                raise ValueError("screenshot_png is not base64") from None
            if not raw.startswith(PNG_MAGIC):
                raise ValueError("screenshot_png is not a PNG image")
        return value

    def screenshot_bytes(self) -> bytes | None:
        return base64.b64decode(self.screenshot_png) if self.screenshot_png is not None else None


class ProofView(BaseModel):
    """A stored proof (the screenshot is served apart, at ``screenshot_url``)."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    tenant_id: int
    job_id: int | None
    agent_id: int | None
    run_id: int | None
    snapshot_id: str
    kind: ProofKind
    verdict: Verdict
    reason: str
    started_at: datetime
    finished_at: datetime
    checks: list[ProofCheck]
    screenshot_url: str | None = None


__all__ = ["MAX_SCREENSHOT", "PNG_MAGIC", "ProofCheck", "ProofKind", "ProofReport", "ProofView", "Verdict"]
