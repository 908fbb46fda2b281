"""What a proof found: a verdict, the reason when it failed, the checks behind it, a screenshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["boot", "fsck", "files"]


@dataclass(frozen=True)
class Check:
    """One thing looked at: a partition's checker, the file sample, the boot."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class ProofResult:
    snapshot_id: str
    kind: Kind
    checks: list[Check] = field(default_factory=list)
    screenshot: bytes | None = None  # PNG of the guest's screen (boot proofs)
    failure: str = ""  # set when something stopped the proof before its checks were done
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failure and bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def verdict(self) -> Literal["passed", "failed"]:
        return "passed" if self.passed else "failed"

    @property
    def reason(self) -> str:
        """The first thing that failed, in one line; empty for a passed proof."""
        if self.failure:
            return self.failure
        bad = next((c for c in self.checks if not c.ok), None)
        if bad is not None:
            return f"{bad.name}: {bad.detail}" if bad.detail else bad.name
        return "" if self.checks else "nothing was checked"

    def summary_json(self) -> dict[str, Any]:
        return {
            "message_type": "summary",
            "snapshot_id": self.snapshot_id,
            "kind": self.kind,
            "verdict": self.verdict,
            "reason": self.reason,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "screenshot_bytes": len(self.screenshot or b""),
            "duration": round(self.duration, 3),
        }


__all__ = ["Check", "Kind", "ProofResult"]
