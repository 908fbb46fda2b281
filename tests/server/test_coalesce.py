"""``Coalescer``: items that arrive while a call runs go together into the next; an item whose
request was cancelled is not served; after ``close`` nothing more is served."""

from __future__ import annotations

import asyncio
import threading

from e3backup.server.coalesce import Coalescer
from tests.helpers import run_coroutine


def _held() -> tuple[Coalescer[int, int], list[list[int]], threading.Event]:
    calls: list[list[int]] = []
    gate = threading.Event()

    def work(batch: list[int]) -> list[int]:
        assert gate.wait(timeout=60), "the test never released the call"
        calls.append(batch)
        return [i * 10 for i in batch]

    return Coalescer(work, "numbers", max_batch=8, max_in_flight=1), calls, gate


async def _queued(c: Coalescer[int, int], n: int) -> None:
    for _ in range(100_000):  # yields to the loop (no sleep) until n items wait
        if c.queued() == n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{c.queued()} queued, not {n}")


def test_items_arriving_during_a_call_go_together_and_cancelled_ones_are_not_served() -> None:
    c, calls, gate = _held()

    async def scenario() -> list[int | None]:
        tasks = [asyncio.ensure_future(c.submit(i)) for i in range(5)]
        await _queued(c, 4)  # 0 is being served; 1-4 wait
        tasks[2].cancel()  # its client went away
        gate.set()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        return [d if not isinstance(d, BaseException) else None for d in done]

    assert run_coroutine(scenario()) == [0, 10, None, 30, 40]
    assert calls == [[0], [1, 3, 4]]
    assert (c.batches, c.served) == (2, 4)


def test_after_close_nothing_more_is_served() -> None:
    c, calls, gate = _held()

    async def scenario() -> list[int | None]:
        tasks = [asyncio.ensure_future(c.submit(i)) for i in range(3)]
        await _queued(c, 2)
        c.close()  # the app's shutdown: those waiting are answered None (the app's own path)
        gate.set()
        answers = list(await asyncio.gather(*tasks))
        answers.append(await c.submit(9))
        return answers

    assert run_coroutine(scenario()) == [0, None, None, None]
    assert calls == [[0]]


def test_a_failed_call_answers_none_and_the_next_one_runs() -> None:
    outcomes = iter([RuntimeError("the database went away"), None])

    def work(batch: list[int]) -> list[int]:
        failure = next(outcomes)
        if failure is not None:
            raise failure
        return batch

    c: Coalescer[int, int] = Coalescer(work, "numbers", max_batch=8, max_in_flight=1)

    async def scenario() -> list[int | None]:
        return [await c.submit(1), await c.submit(2)]

    assert run_coroutine(scenario()) == [None, 2]
