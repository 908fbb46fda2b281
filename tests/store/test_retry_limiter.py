"""Retry policy and bandwidth limiter, on a fake clock (no real sleeping, no timing)."""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
import re
import threading
from pathlib import Path

import pytest

from e3backup.errors import UsageError
from e3backup.store import FileType, Handle, LocalStore, open_store
from e3backup.store.limiter import LimitedStore, TokenBucket
from e3backup.store.retry import RetryPolicy, call_with_retry


class FakeClock:
    """``sleep`` advances ``now``; thread-safe so limiter tests can use threads."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


class Flaky:
    def __init__(self, failures: int, exc: Exception) -> None:
        self.failures, self.exc, self.calls = failures, exc, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return "done"


def _retry(fn: Flaky, policy: RetryPolicy, clock: FakeClock) -> str:
    return call_with_retry(fn, policy, retryable=lambda e: isinstance(e, ConnectionError),
                           what="PUT bk/key", clock=clock, sleep=clock.sleep)


def test_delays_grow_exponentially_with_jitter_and_cap() -> None:
    policy = RetryPolicy(max_attempts=8, base_delay=1.0, max_delay=10.0)
    delays = list(policy.delays(random.Random(7)))
    assert len(delays) == 7
    caps = [1, 2, 4, 8, 10, 10, 10]
    for d, cap in zip(delays, caps, strict=True):
        assert cap / 2 <= d <= cap
    runs = {tuple(policy.delays(random.Random(seed))) for seed in range(5)}
    assert len(runs) == 5, "jitter: different runs pause differently"


def test_retries_until_success_and_logs_each_retry(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="e3backup.store.retry")
    clock = FakeClock()
    fn = Flaky(3, ConnectionError("reset by peer"))
    assert _retry(fn, RetryPolicy(max_attempts=5, base_delay=1), clock) == "done"
    assert fn.calls == 4 and len(clock.slept) == 3
    retries = [r.getMessage() for r in caplog.records
               if r.levelno == logging.DEBUG and "retrying" in r.getMessage()]
    assert len(retries) == 3
    assert all("PUT bk/key" in m and "reset by peer" in m for m in retries)


def test_an_outage_is_a_warning_every_30_s_not_one_per_try(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # an unattended agent's log must not stay silent while a run waits minutes on its storage
    caplog.set_level(logging.WARNING, logger="e3backup.store.retry")
    clock = FakeClock()
    fn = Flaky(100, ConnectionError("reset by peer"))
    with pytest.raises(ConnectionError):
        _retry(fn, RetryPolicy(max_attempts=1000, max_time=95, base_delay=1, max_delay=4), clock)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert fn.calls > 20
    assert all("(PUT bk/key: reset by peer); retrying for up to" in m for m in warnings)
    seconds = [int(re.search(r"failing for (\d+) s", m).group(1)) for m in warnings]  # type: ignore[union-attr]
    assert len(seconds) in (2, 3)  # about 30, 60 (and 90) s into the 95 s outage, not one per try
    assert seconds[0] >= 29 and all(b - a >= 29 for a, b in itertools.pairwise(seconds))


def test_gives_up_after_max_attempts() -> None:
    clock = FakeClock()
    fn = Flaky(100, ConnectionError("down"))
    with pytest.raises(ConnectionError, match="down"):
        _retry(fn, RetryPolicy(max_attempts=4, max_time=1e9), clock)
    assert fn.calls == 4


def test_gives_up_when_the_time_window_is_spent() -> None:
    clock = FakeClock()
    fn = Flaky(100, ConnectionError("down"))
    with pytest.raises(ConnectionError):
        _retry(fn, RetryPolicy(max_attempts=1000, max_time=20, base_delay=1, max_delay=4), clock)
    assert sum(clock.slept) == pytest.approx(20)  # the last attempt comes as the window closes
    assert 5 < fn.calls < 20


def test_non_retryable_errors_propagate_at_once() -> None:
    clock = FakeClock()
    fn = Flaky(1, PermissionError("denied"))
    with pytest.raises(PermissionError):
        _retry(fn, RetryPolicy(), clock)
    assert fn.calls == 1 and clock.slept == []


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(max_time=-1)


def test_token_bucket_paces_to_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock=clock, sleep=clock.sleep)
    bucket.take(1000)  # the initial burst is free
    assert clock.slept == []
    bucket.take(500)
    assert clock.slept == [pytest.approx(0.5)]
    clock.now += 10  # idle time refills only up to the burst
    bucket.take(1500)
    assert clock.slept[-1] == pytest.approx(0.5)


def test_token_bucket_shared_by_threads_keeps_the_total_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10_000, clock=clock, sleep=clock.sleep)
    threads = [threading.Thread(target=lambda: [bucket.take(1000) for _ in range(25)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 100 kB at 10 kB/s with a 10 kB burst: the fake clock advanced at least 9 s
    assert clock.now - 100.0 >= 9.0 - 1e-9


def _id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_limited_store_paces_saves_and_loads(tmp_path: Path) -> None:
    clock = FakeClock()
    store = LimitedStore(LocalStore(tmp_path), limit_upload=100, limit_download=50,
                         clock=clock, sleep=clock.sleep)
    store.create()
    blobs = [bytes([i]) * 51200 for i in range(10)]  # 10 x 50 KiB
    for b in blobs:
        store.save(Handle(FileType.PACK, _id(b)), b)
    # 500 KiB at 100 KiB/s, the first 100 KiB free
    assert sum(clock.slept) == pytest.approx(4.0)
    clock.slept.clear()
    for b in blobs:
        assert store.load(Handle(FileType.PACK, _id(b))) == b
    assert sum(clock.slept) == pytest.approx(9.0)  # 500 KiB at 50 KiB/s, 50 KiB free
    assert sorted(store.list(FileType.PACK)) == sorted((_id(b), len(b)) for b in blobs)
    assert store.location == str(tmp_path)
    clock.slept.clear()
    big = b"f" * 204800
    with open(tmp_path / "spill", "w+b") as f:
        f.write(big)
        store.save_file(Handle(FileType.PACK, _id(big)), f, len(big))
    assert sum(clock.slept) == pytest.approx(1.0)  # 200 KiB at 100 KiB/s, 100 KiB free (refilled)
    assert store.load(Handle(FileType.PACK, _id(big))) == big


def test_open_store_wraps_only_when_limited(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert isinstance(open_store(str(tmp_path), limit_upload=None), LocalStore)
    limited = open_store(str(tmp_path), limit_download=1024)
    assert isinstance(limited, LimitedStore)
    with pytest.raises(UsageError, match="limit_upload must not be negative"):
        open_store(str(tmp_path), limit_upload=-5)
