"""Proof of restore after a backup (policy ``verify_boot``): when it is due, running it, reporting it.

The agent proves, not the server: it holds the repository password already (the server keeps it
sealed and hands it out only inside a run), it has the snapshot's repository open right after the
backup, and the restored scratch image and the VM stay on the protected machine's side. A proof
is due when the job's last *passed* proof is older than a day (``daily``) or a week (``weekly``),
less an hour so a backup scheduled at the same time every day is not pushed to the next day; a
failed proof is tried again after the next backup. The ledger of passed proofs is a small JSON
file in the agent's state directory.

Disk images are proven on Linux only (QEMU, losetup, e2fsck); a Windows agent is never given
such a job (the server refuses ``verify_boot`` there) and says ``PROOF_UNAVAILABLE`` if it is.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ..api.agent import RunAssignment
from ..api.common import Engine
from ..api.proofs import ProofCheck, ProofReport
from ..errors import Cancelled
from ..events import EventCode
from .outbox import Outbox
from .reporter import RunReporter

if TYPE_CHECKING:  # imported when a proof is due: the agent starts without the restore code
    from ..proof import ProofResult
    from ..repo import Repository

log = logging.getLogger(__name__)

INTERVALS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
SLACK = timedelta(hours=1)
MAX_CHECKS = 200


class ProofLedger:
    """When each job's last passed proof finished (``proofs.json`` in the state directory)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / "proofs.json"

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def last_passed(self, job_id: int) -> datetime | None:
        value = self._read().get(str(job_id))
        try:
            return datetime.fromisoformat(value) if value else None
        except ValueError:
            return None

    def record_passed(self, job_id: int, when: datetime) -> None:
        data = self._read()
        data[str(job_id)] = when.isoformat()
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)


def proof_due(setting: str, last_passed: datetime | None, now: datetime) -> bool:
    """Whether a backup finishing at ``now`` is followed by a proof."""
    interval = INTERVALS.get(setting)
    if interval is None:
        return False
    return last_passed is None or now - last_passed >= interval - SLACK


def report_of(run_id: int, result: ProofResult, started: datetime, finished: datetime) -> ProofReport:
    checks = [ProofCheck(name=c.name[:200], ok=c.ok, detail=c.detail[:2000]) for c in result.checks[:MAX_CHECKS]]
    png = base64.b64encode(result.screenshot).decode() if result.screenshot else None
    return ProofReport(run_id=run_id, snapshot_id=result.snapshot_id, kind=result.kind, verdict=result.verdict,
                       reason=result.reason[:4000], started_at=started, finished_at=finished, checks=checks,
                       screenshot_png=png)


def prove_after_backup(repo: Repository, run: RunAssignment, snapshot_id: str, reporter: RunReporter,
                       outbox: Outbox, state_dir: str, platform: str) -> ProofResult | None:
    """Prove the snapshot the backup just saved, when the job's policy says a proof is due."""
    ledger = ProofLedger(state_dir)
    started = datetime.now(UTC)
    if not proof_due(run.policy.verify_boot, ledger.last_passed(run.job_id), started):
        return None
    if run.engine is Engine.DISK_IMAGE and not platform.startswith("linux"):
        reporter.event(EventCode.PROOF_UNAVAILABLE, f"proof of restore not run: image proofs need a Linux agent "
                       f"(this one: {platform})", platform=platform)
        return None
    from ..proof import ProofOptions, ProofResult, run_proof
    from ..proof.options import DEFAULT_MARKER

    scratch = run.disk_temp_dir or str(Path(state_dir) / "proof")
    options = ProofOptions(snapshot=snapshot_id, scratch_dir=scratch,
                           marker=run.policy.verify_boot_marker or DEFAULT_MARKER)
    try:
        result = run_proof(repo, options, cancel=reporter.cancel)
    except Cancelled:
        # the backup is done and its snapshot saved: a cancel stops only the proof (not recorded,
        # so the next backup proves again); the run keeps the backup's outcome
        reporter.event_apart(EventCode.PROOF_UNAVAILABLE, "proof of restore cancelled; the backup is kept")
        return None
    except Exception as e:  # a proof never turns a saved backup into a failed run
        log.exception("run %s: the proof of restore stopped", run.run_id)
        result = ProofResult(snapshot_id, "boot" if run.engine is Engine.DISK_IMAGE else "files",
                             failure=f"the proof stopped: {type(e).__name__}: {e}")
    finished = datetime.now(UTC)
    outbox.add_proof(report_of(run.run_id, result, started, finished))
    if result.passed:
        ledger.record_passed(run.job_id, finished)
        reporter.event(EventCode.PROOF_PASSED, f"proof of restore passed ({result.kind}): {len(result.checks)} "
                       f"check(s) in {result.duration:.1f} s", kind=result.kind, snapshot_id=snapshot_id)
    else:
        reporter.event_apart(EventCode.PROOF_FAILED, f"proof of restore failed ({result.kind}): {result.reason}",
                       kind=result.kind, snapshot_id=snapshot_id)
    log.info("run %s: proof of %s %s", run.run_id, snapshot_id[:8], result.verdict)
    return result


__all__ = ["INTERVALS", "ProofLedger", "proof_due", "prove_after_backup", "report_of"]
