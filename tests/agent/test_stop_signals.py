"""SIGTERM stops the agent even when its handler runs at the worst moment: inside the handler of
an earlier SIGTERM, or while the main thread holds the stop event's lock (a single-file agent
after a self-update gets each SIGTERM three times within a millisecond; a handler that set the
event there waited for its own lock forever: tests/packaging/test_self_update_exe.py)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from e3backup.agent.signals import STOP_SIGNALS, StopOnSignal


@pytest.mark.timeout(60)
def test_stop_signals_arriving_while_the_stop_lock_is_held_still_stop() -> None:
    stop = threading.Event()  # the agent's stop event (Agent.request_exit sets it)
    got: list[int] = []
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def request_exit(signum: int) -> None:
        got.append(signum)
        stop.set()

    stopper = StopOnSignal(request_exit)
    stopper.install()
    try:
        with stop._cond:  # type: ignore[attr-defined]  # as inside Event.set() or Event.wait()
            signal.raise_signal(signal.SIGTERM)  # the handler runs here, in this thread, holding the lock
            signal.raise_signal(signal.SIGINT)
            assert not stop.is_set()  # nothing could set the event while this thread holds its lock
        assert stop.wait(30) and got[0] == signal.SIGTERM
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.close(stopper._write)  # the watcher thread ends
