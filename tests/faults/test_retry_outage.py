"""Defect 8 of issue #28: ``--retry-max-time`` bounds the outage, not each operation.

The retry logic runs on an injected clock: operations that share a store's ``Outage`` give up
once the storage has not answered for ``max_time`` in total, however many come one after
another; an answer starts a fresh window, and a quiet spell with no request is no outage. End to
end, a backup against a SeaweedFS killed for good ends with one line that says why it gave up.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e3backup.store.retry import Outage, RetryPolicy, call_with_retry

from ..helpers import PASSWORD
from ..plugins.seaweedfs import SeaweedServer
from ..store.test_retry_limiter import FakeClock


class _Down:
    """A storage call against a dead server: fails after ``cost`` seconds of the fake clock."""

    def __init__(self, clock: FakeClock, cost: float = 1.0) -> None:
        self.clock, self.cost, self.calls = clock, cost, 0

    def __call__(self) -> str:
        self.calls += 1
        self.clock.sleep(self.cost)  # a connect timeout, say
        raise ConnectionError("connection refused")


POLICY = RetryPolicy(max_attempts=10_000, max_time=20, base_delay=0.5, max_delay=4)


def _call(fn: object, clock: FakeClock, outage: Outage) -> object:
    return call_with_retry(fn, POLICY, retryable=lambda e: isinstance(e, ConnectionError),  # type: ignore[arg-type]
                           what="PUT b/k", clock=clock, sleep=clock.sleep, outage=outage)


def test_operations_one_after_another_share_one_window() -> None:
    clock = FakeClock()
    outage = Outage(clock)
    start = clock.now
    for _ in range(5):  # a backup's next uploads, each after the previous one gave up
        with pytest.raises(ConnectionError) as info:
            _call(_Down(clock), clock, outage)
        assert "no answer from the storage for" in str(info.value.__notes__)
    # each operation retried only within the same 20 s: about 20 s, not 5 x 20 s
    assert clock.now - start <= POLICY.max_time + 5 * 1.0  # + the last attempt of each


def test_an_answer_opens_a_fresh_window_and_idle_time_is_no_outage() -> None:
    clock = FakeClock()
    outage = Outage(clock)
    with pytest.raises(ConnectionError):
        _call(_Down(clock), clock, outage)
    assert _call(lambda: "ok", clock, outage) == "ok"  # the server is back
    clock.sleep(3600)  # an hour with nothing to ask
    down = _Down(clock)
    t0 = clock.now
    with pytest.raises(ConnectionError):
        _call(down, clock, outage)
    assert down.calls > 3 and POLICY.max_time <= clock.now - t0 <= POLICY.max_time + 1.0


def test_without_a_shared_outage_each_call_has_its_own() -> None:
    clock = FakeClock()
    down = _Down(clock, cost=0)
    with pytest.raises(ConnectionError):
        call_with_retry(down, POLICY, retryable=lambda e: True, what="GET b/k", clock=clock, sleep=clock.sleep)
    assert sum(clock.slept) == pytest.approx(POLICY.max_time)  # the last attempt as the window closes


@pytest.mark.slow
def test_backup_gives_up_with_one_line_when_seaweedfs_is_killed_for_good(tmp_path: Path) -> None:
    server = SeaweedServer(tmp_path / "weed")
    server.start()
    try:
        bucket = server.make_bucket()
        url = server.url(bucket, "repo")
        env = {**os.environ, **server.env(), "E3BACKUP_PASSWORD": PASSWORD}
        e3 = [sys.executable, "-m", "e3backup", "-r", url]
        subprocess.run([*e3, "init"], env=env, check=True, capture_output=True)
        src = tmp_path / "src"
        src.mkdir()
        for i in range(8):
            (src / f"f{i}").write_bytes(os.urandom(1 << 20))
        backup = subprocess.Popen(
            [*e3, "--retry-max-time", "2", "--pack-size", "1", "--limit-upload", "2048", "backup", str(src)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        client = server.client()
        while not client.list_objects_v2(Bucket=bucket, Prefix="repo/data/").get("Contents"):
            with contextlib.suppress(subprocess.TimeoutExpired):
                backup.wait(timeout=0.05)
            assert backup.returncode is None, backup.communicate()
        server.stop(kill=True)  # for good, with uploads in flight
        _, err = backup.communicate(timeout=300)
    finally:
        server.stop(kill=True)
    assert backup.returncode == 1
    assert len(err.splitlines()) == 1, err
    assert err.startswith("e3backup: error: ") and f"cannot reach {server.endpoint}" in err
    assert "gave up: no answer from the storage for 2 s (the retry limit is 2 s, --retry-max-time)" in err
