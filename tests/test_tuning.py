"""Process-wide tuning: what it changes is undone."""

from __future__ import annotations

import gc
import threading

from e3backup.tuning import fewer_collections


def test_fewer_collections_is_undone_by_the_last_user() -> None:
    before = gc.get_threshold()
    inside = threading.Event()
    leave = threading.Event()

    def other() -> None:
        with fewer_collections():
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=other)
    with fewer_collections():
        assert gc.get_threshold() != before and gc.get_freeze_count() > 0
        t.start()
        assert inside.wait(10)
    assert gc.get_threshold() != before  # the other backup still runs
    leave.set()
    t.join()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
