"""The agent: the next_run loop, the command loop, the disk report loop and outbox delivery.

Each loop is a thread that sleeps on the agent's stop event (so ``stop`` is immediate). The
poll loop asks for backup runs (``next_run?kind=backup``, jittered interval) and runs at most
``max_concurrent_runs`` at a time (one by default); restore and maintenance runs come from
their commands (``commands.py``) and run beside backups. The ``Agent`` only wires the parts:

    ActiveRuns    the runs in progress by ID (cancel, stop)          active.py
    RunExecutor   one run: checks, dispatch, reporting, outcome      executor.py
    CommandLoop   the dashboard's commands, given the two above      commands.py
    engines       the dispatch table (kind, engine) -> run_x          engines.py

At start, markers left by a killed agent are reported as failed (``RUN_ORPHANED``) and the
snapshots such a run created (LVM) are removed, and the first poll tells the server the engines
this agent runs (``engines_for``: its dispatch table on its platform) — they change only with a
new agent version, hence at a start; enrollment reports them first.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..api.agent import AgentUpdateOffer, CommandAck, RunAssignment, UpdateRunRequest
from ..api.common import CommandStatus, RunKind, RunStatus
from ..errors import E3Error
from ..events import EventCode
from ..storage.probe import ProbeResult, probe
from .active import ActiveRuns
from .client import AuthRejected, MalformedRun, ServerClient, ServerUnavailable
from .commands import CommandLoop
from .config import AgentConfig
from .disks import DiskInventory, WithRestoreTargets, inventory_for
from .engines import Outcome, engines_for
from .executor import STOPPING, RunExecutor
from .hyperv import discover
from .selfupdate import SelfUpdater
from .state import StateDir
from .transport import HttpxTransport, Transport

if TYPE_CHECKING:
    from ..platform.windows.vss import ShadowCopies
    from ..repo import KDFParams

log = logging.getLogger(__name__)

def default_snapshot_cleanup(platform: str = sys.platform, shadows: ShadowCopies | None = None) -> list[str]:
    """Remove snapshots a killed run left behind: on Windows the VSS shadow copies its journal
    lists (``shadows``: the seam, WMI through PowerShell by default), elsewhere LVM snapshots
    (none without the lvm2 tools)."""
    if platform == "win32" or shadows is not None:
        from ..platform.windows.cim import PowerShellRunner
        from ..platform.windows.vss import ShadowCopies, default_journal

        return (shadows or ShadowCopies(PowerShellRunner(), default_journal())).sweep()
    from ..sources.snapshot.base import SubprocessRunner
    from ..sources.snapshot.lvm import LvmSnapshotProvider
    from ..sources.snapshot.select import LVM_TOOLS

    if any(shutil.which(t) is None for t in LVM_TOOLS):
        return []
    return LvmSnapshotProvider(SubprocessRunner(), "cleanup").remove_stale()


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        transport: Transport | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        platform: str = sys.platform,
        inventory: DiskInventory | None = None,
        snapshot_cleanup: Callable[[], list[str]] = default_snapshot_cleanup,
        kdf: KDFParams | None = None,
        prober: Callable[[str], ProbeResult] = probe,
        client_backoff: float = 0.5,
        delivery_retry: float = 2.0,
        rng: random.Random | None = None,
        config_path: Path | None = None,
        updater: SelfUpdater | None = None,
    ) -> None:
        self.config = config
        self.state = StateDir(config.state_dir)
        self.outbox = self.state.outbox
        self.transport = transport or HttpxTransport.network(config.server_url)
        self._stop = threading.Event()
        self._exit = threading.Event()  # asked to exit (a signal): no self-update swap, runs cancelled
        self.client = ServerClient(self.transport, config.agent_token, backoff=client_backoff,
                                   sleep=self._stop.wait, on_contact=self.state.record_contact)
        self.clock = clock
        self.platform = platform
        self.inventory = WithRestoreTargets(inventory or inventory_for(platform), config.restore_roots,
                                            config.allowed_devices,
                                            vms=lambda: discover(config, platform, self._stop.wait))
        self.snapshot_cleanup = snapshot_cleanup
        self.kdf = kdf
        self.prober = prober
        self.delivery_retry = delivery_retry
        self.rng = rng or random.Random()
        self.host = socket.gethostname()
        self.active = ActiveRuns()
        self.runs = RunExecutor(config, self.client, self.state, self.active, host=self.host, platform=platform,
                                clock=clock, kdf=kdf, prober=prober)
        self._slots = threading.BoundedSemaphore(config.max_concurrent_runs)
        self._announce = False  # tell the server our engines with the next poll (set at start)
        self._loops: list[threading.Thread] = []
        self.commands = CommandLoop(self.client, self.outbox, self.inventory, self.active, self.runs,
                                   config.allowed_sources)
        self.updater = updater or SelfUpdater(self.state.path, config.update_public_key, config_path,
                                              self.client.download)
        self._update: tuple[Path, AgentUpdateOffer] | None = None  # checked, waiting for the swap

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self.recover_orphans()
        self.updater.after_start()
        self._announce = True
        for name, interval, body in (
            ("poll", self._poll_interval, self.poll_once),
            ("commands", lambda: self.config.command_interval_seconds, self.commands.poll_once),
            ("disks", lambda: self.config.disk_report_interval_seconds, self.report_disks),
        ):
            t = threading.Thread(target=self._loop, args=(name, interval, body), name=f"agent-{name}", daemon=True)
            t.start()
            self._loops.append(t)
        t = threading.Thread(target=self._deliver_loop, name="agent-outbox", daemon=True)
        t.start()
        self._loops.append(t)
        log.debug("agent config: %r; engines here: %s", self.config,
                  ", ".join(e.value for e in engines_for(self.platform, self.config)))
        log.info("agent %s started (server %s, state %s)", self.config.agent_id, self.config.server_url,
                 self.config.state_dir)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop polling, cancel running jobs (reported failed: the agent stopped), deliver what
        can be delivered."""
        self._stop.set()
        self.active.cancel_all(STOPPING)
        deadline = time.monotonic() + timeout
        for t in [*self.runs.threads(), *self._loops]:
            t.join(max(0.0, deadline - time.monotonic()))
        try:
            self.outbox.flush(self.client)
        except E3Error as e:
            log.warning("%d outbox entries kept for the next start (%s)", self.outbox.pending_count(), e)
        self.transport.close()

    def request_exit(self, signum: int = 0) -> None:
        """Stop for good (SIGTERM, Ctrl-C): running jobs are cancelled and a self-update waiting
        for them is dropped, not applied. Not from a signal handler (``signals.py``)."""
        self._exit.set()
        self._stop.set()

    def run_forever(self) -> None:
        self.start()
        while not self._stop.wait(self.updater.trial_left()):
            if self.updater.trial_expired():
                self._stop.set()
        if self._exit.is_set():
            self._drop_update()
        elif self._update is not None:
            self.apply_update()
        elif self.updater.trial_expired():
            self.updater.roll_back(restart=self._quiesce())
        self.stop()

    def _drop_update(self) -> None:
        if self._update is not None:
            new, offer = self._update
            self._update = None
            new.unlink(missing_ok=True)
            log.info("self-update to %s not applied: the agent is stopping", offer.version)

    def _quiesce(self) -> bool:
        """The loops have stopped: let any run still going finish (never cancelled for an update),
        deliver what is waiting. False when asked to exit meanwhile."""
        for t in self._loops:
            t.join()
        for t in self.runs.threads():
            while t.is_alive() and not self._exit.is_set():
                t.join(1.0)  # a stop may come while a long run finishes
        if self._exit.is_set():
            return False
        try:
            self.outbox.flush(self.client)
        except E3Error as e:
            log.warning("self-update: %d outbox entries kept for the next start (%s)", self.outbox.pending_count(), e)
        self.transport.close()
        return True

    def apply_update(self) -> None:
        """Between runs: swap to the checked new version (this process is replaced), unless asked
        to exit while a run was finishing."""
        assert self._update is not None
        new, offer = self._update
        if not self._quiesce():
            self._drop_update()
            return
        self.updater.swap(new, offer)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _poll_interval(self) -> float:
        j = self.config.jitter_fraction
        return self.config.poll_interval_seconds * (1 + self.rng.uniform(-j, j))

    def _loop(self, name: str, interval: Callable[[], float], body: Callable[[], Any]) -> None:
        while not self._stop.is_set():
            try:
                body()
            except AuthRejected as e:
                log.error("%s: the server rejected this agent's token (%s); is the agent revoked?", name, e.detail)
            except ServerUnavailable as e:
                log.warning("%s: %s", name, e)
            except Exception:
                log.exception("%s loop: unexpected error", name)
            self._stop.wait(interval())

    def _deliver_loop(self) -> None:
        wait = self.delivery_retry
        while not self._stop.is_set():
            self.outbox.wakeup.wait(wait)
            self.outbox.wakeup.clear()
            if self._stop.is_set():
                return
            try:
                self.outbox.flush(self.client)
                wait = self.delivery_retry
            except ServerUnavailable as e:
                log.warning("outbox: %d entries wait for the server (%s)", self.outbox.pending_count(), e)
                wait = min(wait * 2, 30.0)
                self._stop.wait(wait)
                self.outbox.wakeup.set()
            except Exception:
                log.exception("outbox delivery: unexpected error")

    def wait_idle(self, timeout: float) -> bool:
        """Tests and the demo: wait (bounded) until no run is in progress."""
        deadline = time.monotonic() + timeout
        threads = self.runs.threads()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    # -- the loops' bodies ------------------------------------------------------------------------

    def poll_once(self) -> bool:
        """Ask for one backup run and start it; False when busy or there is nothing to do."""
        if not self._slots.acquire(blocking=False):
            return False
        try:
            announce = self._announce
            event = self.updater.pending_event()
            answer = self.client.next_run(kind=RunKind.BACKUP.value, os_version=_os_version(),
                                          engines=engines_for(self.platform, self.config) if announce else None,
                                          platform=self.platform if announce else None,
                                          self_update=self.updater.enabled, update_event=event)
            if announce:
                self._announce = False
            if event is not None:
                self.updater.event_sent(event)
            self.updater.reported()
        except MalformedRun as e:
            self._slots.release()
            self.refuse_malformed(e)
            return False
        except BaseException:
            self._slots.release()
            raise
        if answer.run is None:
            self._slots.release()
            if self.updater.wants(answer.update) and not self.active.ids():
                self._prepare_update(answer.update)
            return False
        self.start_run(answer.run, release=self._slots.release)
        return True

    def _prepare_update(self, offer: AgentUpdateOffer | None) -> None:
        """Idle: fetch and check the offered version; once it passed, stop polling (the swap
        happens in ``run_forever`` when no run is left)."""
        assert offer is not None
        new = self.updater.prepare(offer)
        if new is not None:
            self._update = (new, offer)
            self._stop.set()

    def report_disks(self) -> None:
        self.client.report_disks(self.inventory.report())

    def start_run(self, run: RunAssignment, command_id: int | None = None,
                  release: Callable[[], None] | None = None) -> threading.Thread:
        return self.runs.start(run, command_id, release)

    def refuse_malformed(self, e: MalformedRun, command_id: int | None = None) -> None:
        self.runs.refuse_malformed(e, command_id)

    def execute(self, run: RunAssignment, command_id: int | None = None) -> Outcome:
        return self.runs.execute(run, command_id)

    # -- after a kill -------------------------------------------------------------------------------

    def recover_orphans(self) -> list[int]:
        """Report runs a killed agent left as failed, and clean up after them."""
        orphans = []
        for m in self.state.current_runs():
            if m.pid == os.getpid():
                continue
            if self.outbox.has_final(m.run_id):
                self.state.end_run(m.run_id)  # it finished; only the delivery was left
                continue
            details: dict[str, Any] = {"pid": m.pid, "started_at": m.started_at, "engine": m.engine}
            if m.engine == "disk_image" or (m.engine == "files" and self.platform == "win32"):  # VSS
                try:
                    details["snapshots_removed"] = self.snapshot_cleanup()
                except Exception as e:
                    details["cleanup_error"] = str(e)
            self.outbox.add_event(m.run_id, EventCode.RUN_ORPHANED.value,
                                  f"the agent (pid {m.pid}) stopped while this run was in progress "
                                  f"(started {m.started_at}); marked failed", details=details)
            self.outbox.add_final(UpdateRunRequest.model_validate(
                {"run_id": m.run_id, "status": RunStatus.FAILED,
                 "error_summary": "the agent was killed during this run"}))
            if m.command_id is not None:
                self.outbox.add_ack(CommandAck(command_id=m.command_id, status=CommandStatus.FAILED,
                                               error="the agent was killed during this run"))
            self.state.end_run(m.run_id)
            orphans.append(m.run_id)
            log.warning("run %s was orphaned by a previous agent process (pid %s); reported failed",
                        m.run_id, m.pid)
        return orphans


def _os_version() -> str:
    import platform

    return f"{platform.system()} {platform.release()}"[:255]


__all__ = ["STOPPING", "Agent", "default_snapshot_cleanup"]
