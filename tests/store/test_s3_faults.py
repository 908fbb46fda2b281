"""The S3 store under faults: a storm of 503/500/resets, a dead server, a restarted server."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from e3backup.errors import StoreUnavailableError
from e3backup.store import FileType, Handle, open_store
from e3backup.store.retry import RetryPolicy
from tests.plugins.faultproxy import FaultProxy
from tests.plugins.seaweedfs import SeaweedServer


def _id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_storm_of_throttling_and_resets_is_ridden_out(
    s3_server: SeaweedServer, fault_proxy: FaultProxy,
) -> None:
    bucket = s3_server.make_bucket()
    fault_proxy.set(slowdown=0.15, error500=0.05, reset_request=0.05, reset_response=0.08,
                    delay=0.05, delay_seconds=0.02)
    policy = RetryPolicy(max_attempts=40, max_time=120, base_delay=0.005, max_delay=0.05)
    store = open_store(fault_proxy.url(bucket, "storm"), **s3_server.store_options(),
                       upload_connections=4, retry=policy)
    # sizes around botocore's 1 MiB "Expect: 100-continue" threshold and up to 3 MiB
    blobs = [os.urandom(size) for size in (1, 100, 4096, 70_000, 1024 * 1024 + 5, 3 << 20) * 6]

    def save(b: bytes) -> None:
        store.save(Handle(FileType.PACK, _id(b)), b)

    def ranged(b: bytes) -> None:
        h = Handle(FileType.PACK, _id(b))
        assert store.load(h) == b
        mid = len(b) // 3
        assert store.load(h, mid, len(b) // 2) == b[mid: mid + len(b) // 2]
        assert store.stat(h) == len(b)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(save, blobs))
        list(pool.map(ranged, blobs))
        assert sorted(store.list(FileType.PACK)) == sorted({(_id(b), len(b)) for b in blobs})

    injected = {k: fault_proxy.counts[k] for k in
                ("slowdown", "error500", "reset_request", "reset_response", "delay")}
    assert all(n > 0 for n in injected.values()), injected
    direct = open_store(s3_server.url(bucket, "storm"), **s3_server.store_options())
    for b in blobs:
        assert direct.load(Handle(FileType.PACK, _id(b))) == b, "stored bytes are identical"


class _RetrySeen(logging.Handler):
    """Sets ``event`` on the first retry the store logs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.event = threading.Event()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.count += 1
            self.event.set()


@pytest.fixture
def retry_seen() -> Iterator[_RetrySeen]:
    handler = _RetrySeen()
    logger = logging.getLogger("e3backup.store.retry")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


@pytest.mark.slow
def test_dead_server_fails_clearly_within_the_retry_window(
    s3_running: SeaweedServer, retry_seen: _RetrySeen,
) -> None:
    server = s3_running
    bucket = server.make_bucket()
    policy = RetryPolicy(max_attempts=1000, max_time=1.0, base_delay=0.02, max_delay=0.1)
    store = open_store(server.url(bucket, "dead"), **server.store_options(), retry=policy,
                       connect_timeout=1, read_timeout=2)
    h = Handle(FileType.SNAPSHOT, _id(b"snap"))
    store.save(h, b"snap")
    server.stop(kill=True)
    for call in (lambda: store.save(h, b"snap"), lambda: store.load(h, 1, 2), lambda: store.stat(h),
                 lambda: list(store.list(FileType.SNAPSHOT))):
        with pytest.raises(StoreUnavailableError) as exc:
            call()
        message = str(exc.value)
        assert server.endpoint in message and "cannot reach" in message
        assert bucket in message
    assert retry_seen.count >= 4, "each operation was retried before giving up"


@pytest.mark.slow
def test_server_back_within_the_retry_window_completes(
    s3_running: SeaweedServer, retry_seen: _RetrySeen,
) -> None:
    server = s3_running
    bucket = server.make_bucket()
    policy = RetryPolicy(max_attempts=1000, max_time=120, base_delay=0.05, max_delay=0.5)
    store = open_store(server.url(bucket, "restart"), **server.store_options(), retry=policy,
                       connect_timeout=1, read_timeout=5)
    before = os.urandom(300_000)
    store.save(Handle(FileType.PACK, _id(before)), before)
    server.stop(kill=True)
    data = os.urandom(200_000)
    result: dict[str, object] = {}

    def work() -> None:
        try:
            store.save(Handle(FileType.PACK, _id(data)), data)
            result["loaded"] = store.load(Handle(FileType.PACK, _id(before)), 1000, 5000)
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=work)
    t.start()
    assert retry_seen.event.wait(timeout=60), "the store retried while the server was down"
    server.start()
    t.join(timeout=120)
    assert not t.is_alive()
    assert "error" not in result, result.get("error")
    assert result["loaded"] == before[1000:6000]
    assert store.load(Handle(FileType.PACK, _id(data))) == data
