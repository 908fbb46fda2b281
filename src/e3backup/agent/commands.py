"""The command loop: work the dashboard queues for this agent, independent of running jobs.

    restore       claim the command's run (``next_run?run_id=``), run it beside any backup
    maintenance   the same: forget by retention, prune (``full``: check too)
    hyperv_restore  the same path; fails with ENGINE_UNAVAILABLE on this build
    cancel        set the run's cancel event; the engine stops within seconds
    list_disks    answer at once with the disk report (the dashboard waits for it)
    list_folder   answer at once with a folder's entries (the job wizard waits for it)

A command is acknowledged when taken; a run's result follows through the outbox after its
final status. A command whose acknowledgement did not get through stays pending on the
server and is handled again at the next poll (every handler is idempotent).
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from ..api.agent import CommandAck, CommandView, RunAssignment
from ..api.common import CommandStatus, CommandType
from ..errors import E3Error
from .active import ActiveRuns
from .client import MalformedRun, ServerClient, ServerRefused
from .disks import DiskInventory
from .folders import list_folder
from .outbox import Outbox
from .validate import RunRefused

log = logging.getLogger(__name__)

_RUN_COMMANDS = {CommandType.RESTORE, CommandType.MAINTENANCE, CommandType.HYPERV_RESTORE}


class RunStarter(Protocol):
    """What the command loop needs of the run executor."""

    def start(self, run: RunAssignment, command_id: int | None = None) -> threading.Thread: ...

    def refuse_malformed(self, e: MalformedRun, command_id: int | None = None) -> None: ...


class CommandLoop:
    def __init__(self, client: ServerClient, outbox: Outbox, inventory: DiskInventory, active: ActiveRuns,
                 runs: RunStarter, allowed_sources: list[str] | None = None) -> None:
        self.client = client
        self.outbox = outbox
        self.inventory = inventory
        self.active = active
        self.runs = runs
        self.allowed_sources = allowed_sources
        self._taken: set[int] = set()
        self._unclaimed: dict[int, CommandView] = {}  # acknowledged, run not claimed yet (server down)

    def poll_once(self) -> int:
        handled = 0
        for cmd in list(self._unclaimed.values()):
            self._claim(cmd)
        for cmd in self.client.poll_commands().commands:
            if cmd.command_id in self._taken:
                continue
            self.handle(cmd)
            handled += 1
        return handled

    def _ack(self, cmd: CommandView, status: CommandStatus, result: dict[str, object] | None = None,
             error: str | None = None) -> None:
        self.client.ack_command(CommandAck(command_id=cmd.command_id, status=status, result=result,
                                                 error=error[:4000] if error else None))

    def handle(self, cmd: CommandView) -> None:
        log.info("command %s: %s (run %s)", cmd.command_id, cmd.type.value, cmd.run_id)
        if cmd.type is CommandType.CANCEL:
            found = cmd.run_id is not None and self.active.cancel(cmd.run_id, "cancelled from the dashboard")
            self._ack(cmd, CommandStatus.COMPLETED, {"run_id": cmd.run_id, "running_here": found})
        elif cmd.type is CommandType.LIST_DISKS:
            try:
                report = self.inventory.report()
            except (E3Error, OSError, ValueError) as e:
                self._ack(cmd, CommandStatus.FAILED, error=f"disk inventory failed: {e}")
                return
            self._ack(cmd, CommandStatus.COMPLETED, report.model_dump(mode="json"))
        elif cmd.type is CommandType.LIST_FOLDER:
            try:
                listing = list_folder(str(cmd.payload.get("path") or ""), allowed=self.allowed_sources)
            except (RunRefused, OSError) as e:
                self._ack(cmd, CommandStatus.FAILED, error=f"cannot list the folder: {e}")
                return
            self._ack(cmd, CommandStatus.COMPLETED, listing.model_dump(mode="json"))
        elif cmd.type in _RUN_COMMANDS:
            self._start_run(cmd)
        else:  # a type this agent does not know: say so instead of leaving it pending
            self._ack(cmd, CommandStatus.FAILED, error=f"unknown command type {cmd.type}")

    def _start_run(self, cmd: CommandView) -> None:
        if cmd.run_id is None:
            self._ack(cmd, CommandStatus.FAILED, error="command has no run")
            return
        self._ack(cmd, CommandStatus.ACKNOWLEDGED)
        self._taken.add(cmd.command_id)
        self._unclaimed[cmd.command_id] = cmd
        self._claim(cmd)

    def _claim(self, cmd: CommandView) -> None:
        """Claim the command's run and start it; a server that cannot be reached leaves the
        command in ``_unclaimed`` for the next poll."""
        assert cmd.run_id is not None
        failure: str | None = None
        try:
            answer = self.client.next_run(run_id=cmd.run_id)
        except MalformedRun as e:
            self._unclaimed.pop(cmd.command_id, None)
            self.runs.refuse_malformed(e, cmd.command_id)
            return
        except ServerRefused as e:
            failure = f"could not claim run {cmd.run_id}: {e.detail}"
        else:
            if answer.run is None:
                failure = f"run {cmd.run_id} is no longer queued"
        self._unclaimed.pop(cmd.command_id, None)
        if failure is not None or answer.run is None:
            self.outbox.add_ack(CommandAck(command_id=cmd.command_id, status=CommandStatus.FAILED,
                                                 error=failure))
            return
        self.runs.start(answer.run, command_id=cmd.command_id)


__all__ = ["CommandLoop"]
