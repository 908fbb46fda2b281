"""A 7-hour restore on a simulated clock: the console refreshes its session every 5 minutes and
the session never expires (the server's 6-hour expiry slides), so the run still ends SUCCESS.

The server runs on a controlled clock; the console's timer advances that clock instead of
sleeping, and the restore waits (``after_write``) until 7 hours have passed on it.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from e3backup.agent.transport import HttpxTransport
from e3backup.recovery.client import RecoveryClient
from e3backup.recovery.console import ConsoleSettings, Hooks, Phase, RecoveryConsole
from e3backup.repo import Repository
from e3backup.server import create_app
from e3backup.store import LocalStore
from tests.conftest import FAST_KDF
from tests.helpers import PASSWORD
from tests.recovery.conftest import DISK_SIZE, SourceDisk, assert_restored, seed_site, server_settings, target_disk
from tests.server.conftest import FakeClock
from tests.server.live import free_port, serve_in_thread

HOURS = 7
POLL = 150.0


class ServerTime:
    """The console's timer on the server's fake clock: waiting advances it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.start = clock.now()
        self.expired_seen: list[str] = []
        self.console: RecoveryConsole | None = None
        self.seven_hours = threading.Event()
        self._mu = threading.Lock()

    def now(self) -> float:
        return self.clock.now().timestamp()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        with self._mu:
            self.clock.advance(seconds=seconds)
            now = self.clock.now()
        expires = self.console.session_expires_at if self.console else None
        if expires is not None and expires <= now:
            self.expired_seen.append(f"{now}: session expired at {expires}")
        if now - self.start >= timedelta(hours=HOURS):
            self.seven_hours.set()
        return False


def test_a_seven_hour_restore_keeps_its_session(source_disk: SourceDisk, tmp_path: Path) -> None:
    clock = FakeClock()
    repo = Repository.init(LocalStore(tmp_path / "repo"), PASSWORD.encode(), FAST_KDF)
    port = free_port()
    app = create_app(server_settings(tmp_path / "data", port), clock=clock)
    with serve_in_thread(app, port) as url:
        dest = {"type": "local", "path": str(tmp_path / "repo"), "repository_password": PASSWORD}
        site = seed_site(url, app, source_disk, dest, repo)
        repo.close()
        code = site.issue_code()
        timer = ServerTime(clock)
        hooks = Hooks(after_write=lambda: timer.seven_hours.wait(120))
        settings = ConsoleSettings(poll_interval=POLL, progress_interval=3600.0)
        console = RecoveryConsole(RecoveryClient(HttpxTransport.network(url)), settings, timer, hooks)
        timer.console = console
        try:
            point = console.sign_in(code).point
            with target_disk(tmp_path, DISK_SIZE) as dev:
                console.start(dev, Path(dev).name)
                assert console.wait(180) is Phase.DONE, console.status().message
                assert console.wait_delivered(60)
                assert_restored(dev, site)
        finally:
            console.close()
        assert timer.seven_hours.is_set()
        assert timer.expired_seen == []
        elapsed = clock.now() - timer.start
        assert elapsed >= timedelta(hours=HOURS)
        # one refresh every 5 minutes of simulated time (the keeper wakes every 2.5 minutes)
        assert abs(console.refreshes - elapsed // timedelta(minutes=5)) <= 1, (console.refreshes, elapsed)
        run = site.run(point.run_id)
        assert run["status"] == "success", run
