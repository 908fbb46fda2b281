"""A network drop in the middle of a recovery: the control-plane server is stopped and started
again, and the repository (real S3 behind the fault proxy) is unreachable for a while. The restore
completes, resuming only the segments not yet written, and the run ends SUCCESS with every event
delivered once the server is back.

The waits are the console's timer (the repository outage lasts until the test says so), never
sleeps.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from e3backup.agent.transport import HttpxTransport
from e3backup.recovery.client import RecoveryClient
from e3backup.recovery.console import ConsoleSettings, Hooks, Phase, RecoveryConsole
from e3backup.repo import Repository
from e3backup.server import create_app
from e3backup.store.retry import RetryPolicy
from e3backup.store.url import open_store
from tests.conftest import FAST_KDF
from tests.helpers import PASSWORD
from tests.plugins.faultproxy import FaultProxy
from tests.plugins.seaweedfs import SeaweedServer
from tests.recovery.conftest import DISK_SIZE, SourceDisk, assert_restored, seed_site, server_settings, target_disk
from tests.server.live import free_port, serve_in_thread

EXPECTED = ["REPOSITORY_OPENED", "RECOVERY_STARTED", "RECOVERY_REPOSITORY_UNREACHABLE", "RECOVERY_RESUMED",
            "RECOVERY_COMPLETED"]


class OutageTimer:
    """Real time for the session keeper; the console's wait for the repository ends when the
    test brings the repository back."""

    def __init__(self) -> None:
        self.waiting = threading.Event()
        self.back = threading.Event()
        self.console: RecoveryConsole | None = None

    def now(self) -> float:
        import time

        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        assert self.console is not None and self.console.reporter is not None
        if event is self.console.reporter.cancel:  # the restore, waiting for the repository
            self.waiting.set()
            self.back.wait(60)
            return event.is_set()
        return event.wait(seconds)


def _repository_behind_the_proxy(
    s3_server: SeaweedServer, fault_proxy: FaultProxy
) -> tuple[Repository, dict[str, str]]:
    """A new repository on the real S3 behind the fault proxy, and the job destination naming it."""
    bucket = s3_server.make_bucket()
    repo = Repository.init(open_store(fault_proxy.url(bucket), **s3_server.store_options()), PASSWORD.encode(),
                           FAST_KDF)
    dest = {"type": "s3", "endpoint": fault_proxy.endpoint, "bucket": bucket, "access_key_id": s3_server.access_key,
            "secret_access_key": s3_server.secret_key, "repository_password": PASSWORD}
    return repo, dest


@pytest.mark.slow
def test_server_and_repository_drop_mid_restore(
    source_disk: SourceDisk, s3_server: SeaweedServer, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    repo, dest = _repository_behind_the_proxy(s3_server, fault_proxy)
    port = free_port()
    settings = server_settings(tmp_path / "data", port)
    app = create_app(settings)
    first = serve_in_thread(app, port)
    url = first.__enter__()
    server_up = True
    try:
        site = seed_site(url, app, source_disk, dest, repo)
        repo.close()
        code = site.issue_code()
        timer = OutageTimer()
        written: list[int] = []
        third = threading.Event()

        def on_segment(first_chunk: int) -> None:
            written.append(first_chunk)
            if len(written) == 3:
                fault_proxy.set(reset_request=1.0)  # the repository is gone from now on
                third.set()

        console = RecoveryConsole(
            RecoveryClient(HttpxTransport.network(url, timeout=5), attempts=1),
            ConsoleSettings(workers=1, segment_size_mb=4, poll_interval=0.2,
                            store_retry=RetryPolicy(max_attempts=3, max_time=1.0, base_delay=0.01, max_delay=0.05)),
            timer,
            Hooks(on_segment=on_segment),
        )
        timer.console = console
        try:
            point = console.sign_in(code).point
            with target_disk(tmp_path, DISK_SIZE) as dev:
                console.start(dev, Path(dev).name)
                assert third.wait(60)
                first.__exit__(None, None, None)  # the control-plane server goes down too
                server_up = False
                assert timer.waiting.wait(60), console.status().message
                assert console.status().message == "The repository is unreachable: retrying"
                fault_proxy.set()  # the repository is back
                timer.back.set()
                assert console.wait(120) is Phase.DONE, console.status().message
                assert console.status().pending_delivery > 0  # the server is still down: kept
                assert_restored(dev, site)
            assert sorted(written) == sorted(set(written))  # no segment written twice
            assert len(written) == console.status().segments_total
            assert fault_proxy.counts["reset_request"] > 0
            with serve_in_thread(create_app(settings), port):  # the server is back
                assert console.wait_delivered(60)
                run = site.run(point.run_id)
                events = site.events(point.run_id)
        finally:
            console.close()
    finally:
        if server_up:
            first.__exit__(None, None, None)
    assert run["status"] == "success", run
    codes = [e["code"] for e in events]
    assert [c for c in codes if c in EXPECTED] == EXPECTED
    local = [e["code"] for e in console.status().events]
    assert codes == local  # every event the console saw reached the server, in order, once
    unreachable = next(e for e in events if e["code"] == "RECOVERY_REPOSITORY_UNREACHABLE")
    assert unreachable["details"]["segments_written"] >= 3
    assert [e["seq"] for e in events] == list(range(len(events)))


def test_ctrl_c_at_the_scripted_console_cancels_the_run(
    source_disk: SourceDisk, s3_server: SeaweedServer, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    """Ctrl-C while the scripted console waits for an unreachable repository (its packs; the
    sign-in read the rest): the restore stops, the run the dashboard shows ends CANCELLED rather
    than left running, and the command exits 130. The wait is the console's own report line."""
    repo, dest = _repository_behind_the_proxy(s3_server, fault_proxy)
    port = free_port()
    settings = server_settings(tmp_path / "data", port)
    app = create_app(settings)
    with serve_in_thread(app, port) as url:
        site = seed_site(url, app, source_disk, dest, repo)
        repo.close()
        # how many pack reads a sign-in makes (the snapshot's tree, layout.json): a sign-in that
        # is closed unused (its run ends cancelled, like a technician walking away)
        fault_proxy.set(only_paths="/data/")
        probe = RecoveryConsole(RecoveryClient(HttpxTransport.network(url)), ConsoleSettings())
        try:
            probe.sign_in(site.issue_code())
        finally:
            probe.close()
        signed_in = fault_proxy.counts["matched"]
        assert signed_in > 0
        code = site.issue_code()
        fault_proxy.set(reset_request=1.0, only_paths="/data/", after=signed_in)  # then no pack is reachable
        with target_disk(tmp_path, DISK_SIZE) as dev:
            args = ["e3backup", "--retry-max-time", "1", "recovery", "--server", url, "--code", code, "--target", dev,
                    "--yes"]  # fmt: skip
            # Ctrl-C as a terminal delivers it: the test's own workers (xdist) ignore SIGINT and a
            # child inherits that, so the console gets Python's handler back first, as from a shell
            argv = [sys.executable, "-c", "import runpy, signal, sys; signal.signal(signal.SIGINT, "
                    f"signal.default_int_handler); sys.argv = {args!r}; runpy.run_module('e3backup', "
                    "run_name='__main__')"]  # fmt: skip
            with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
                try:
                    assert proc.stderr is not None
                    seen = []
                    for line in proc.stderr:
                        seen.append(line)
                        if "The repository is unreachable" in line:
                            break
                    else:
                        pytest.fail("the console never said the repository was unreachable:\n" + "".join(seen))
                    proc.send_signal(signal.SIGINT)
                    out, err = proc.communicate(timeout=120)
                finally:
                    if proc.poll() is None:  # failed above: never leave the console running
                        proc.kill()
        assert proc.returncode == 130, out + "".join(seen) + err
        assert "Cancelling the restore" in err
        run = site.run(int(re.search(r"recovery run #(\d+)", out).group(1)))  # type: ignore[union-attr]
    assert run["status"] == "cancelled", run
    assert fault_proxy.counts["reset_request"] > 0
