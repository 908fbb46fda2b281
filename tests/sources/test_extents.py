"""ExtentList against a model: a Python set of byte offsets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from e3backup.sources.extents import Extent, ExtentList

raw = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 60)), max_size=12)


def model(pairs: list[tuple[int, int]]) -> set[int]:
    return {b for o, n in pairs for b in range(o, o + n)}


def as_set(el: ExtentList) -> set[int]:
    return model([(e.offset, e.length) for e in el])


def is_normal(el: ExtentList) -> bool:
    items = list(el)
    return all(e.length > 0 for e in items) and all(a.end < b.offset for a, b in itertools.pairwise(items))


@given(raw)
def test_normalised(p: list[tuple[int, int]]) -> None:
    el = ExtentList(p)
    assert is_normal(el)
    assert as_set(el) == model(p)
    assert el.total_bytes == len(model(p))
    assert ExtentList(reversed(p)) == el


@given(raw, raw)
def test_algebra(p: list[tuple[int, int]], q: list[tuple[int, int]]) -> None:
    a, b = ExtentList(p), ExtentList(q)
    for result, expected in (
        (a | b, model(p) | model(q)),
        (a & b, model(p) & model(q)),
        (a - b, model(p) - model(q)),
        (a ^ b, model(p) ^ model(q)),
    ):
        assert is_normal(result)
        assert as_set(result) == expected


@given(raw, st.integers(0, 400), st.integers(0, 50))
def test_clamp_shift_complement(p: list[tuple[int, int]], size: int, delta: int) -> None:
    a = ExtentList(p)
    assert as_set(a.clamp(size)) == {b for b in model(p) if b < size}
    assert as_set(a.shift(delta)) == {b + delta for b in model(p)}
    assert as_set(a.complement(size)) == set(range(size)) - model(p)


@given(raw, st.integers(1, 64))
def test_chunk_grid(p: list[tuple[int, int]], chunk: int) -> None:
    a = ExtentList(p)
    assert set(a.chunk_indexes(chunk)) == {b // chunk for b in model(p)}
    aligned = a.align(chunk)
    assert as_set(aligned) == {c * chunk + i for c in {b // chunk for b in model(p)} for i in range(chunk)}
    assert a.covers(0, 0)
    assert all(aligned.covers(e.offset, e.length) for e in a)


@given(raw, st.integers(0, 300), st.integers(0, 40))
def test_covers_overlaps(p: list[tuple[int, int]], off: int, n: int) -> None:
    a = ExtentList(p)
    span = set(range(off, off + n))
    assert a.covers(off, n) == (span <= model(p))
    assert a.overlaps(off, n) == bool(span & model(p))


def test_rejects_negative_and_round_trips_pairs() -> None:
    with pytest.raises(ValueError):
        ExtentList([(-1, 4)])
    with pytest.raises(ValueError):
        Extent(0, -1)
    a = ExtentList([(10, 5), (0, 3), (3, 2), (15, 1)])
    assert a.to_pairs() == [[0, 5], [10, 6]]
    assert ExtentList(tuple(x) for x in a.to_pairs()) == a  # type: ignore[misc]
    assert a.end == 16 and ExtentList().end == 0
