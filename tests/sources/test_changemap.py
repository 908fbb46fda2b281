"""Change-map parsing and per-chunk decisions, checked chunk by chunk against a byte model."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from e3backup.events import Event, EventCode
from e3backup.sources.changemap import (
    ChunkAction,
    ParentImage,
    decide_chunks,
    load_change_map,
    parse_change_map,
)
from e3backup.sources.errors import ChangeMapError
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.model import DiskLayout, Partition

CS = 16
LAYOUT = DiskLayout(512, 1000, "gpt", (Partition(1, 100, 800, "X", guid="G1"),), "D")


def test_parse_valid_and_merged(tmp_path: Path) -> None:
    f = tmp_path / "changes.json"
    f.write_text(json.dumps([[0, 10], [5, 10], [900, 100], [50, 0]]))
    assert load_change_map(f, 1000) == ExtentList([(0, 15), (900, 100)])
    assert parse_change_map([], 10) == ExtentList()


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"a": 1}, "expected a JSON list"),
        ([[0, 1], [2]], r"entry 1 \[2\] is not a pair"),
        ([[0, 1], ["3", 4]], "entry 1"),
        ([[True, 4]], "entry 0"),
        ([[0, 1.5]], "entry 0"),
        ([[0, 1], [1, 1], [-1, 3]], r"entry 2 \[-1, 3\] has a negative"),
        ([[990, 11]], r"entry 0 \[990, 11\] ends at 1001, past the device end 1000"),
    ],
)
def test_parse_rejects_bad_entries(doc: object, match: str) -> None:
    with pytest.raises(ChangeMapError, match=match):
        parse_change_map(doc, 1000)


def test_unreadable_file_is_a_change_map_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[[0, 1],")
    with pytest.raises(ChangeMapError, match=r"bad\.json"):
        load_change_map(bad, 1000)
    with pytest.raises(ChangeMapError, match=r"missing\.json"):
        load_change_map(tmp_path / "missing.json", 1000)


def model_action(i: int, size: int, plan: set[int], parent_plan: set[int], changed: set[int]) -> ChunkAction:
    chunk = set(range(i * CS, min((i + 1) * CS, size)))
    if not chunk & plan:
        return ChunkAction.ZERO
    if chunk & changed or (chunk & plan) != (chunk & parent_plan):
        return ChunkAction.READ
    return ChunkAction.REUSE


extents = st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 80)), max_size=8)


def as_set(el: ExtentList) -> set[int]:
    return {b for e in el for b in range(e.offset, e.end)}


@given(extents, extents, extents)
def test_decisions_match_the_model(
    p: list[tuple[int, int]], q: list[tuple[int, int]], c: list[tuple[int, int]]
) -> None:
    size = 1000
    plan, parent_plan, changed = (ExtentList(x).clamp(size) for x in (p, q, c))
    parent = ParentImage(size, CS, parent_plan, LAYOUT)
    d = decide_chunks(CS, size, plan, LAYOUT, changed, parent)
    assert d.ignored_reason is None
    for i in range(d.chunk_count):
        assert d.action(i) == model_action(i, size, as_set(plan), as_set(parent_plan), as_set(changed)), i
    runs = list(d.runs())
    assert runs[0][1] == 0 and runs[-1][2] == d.chunk_count
    assert all(a[2] == b[1] for a, b in itertools.pairwise(runs))
    assert sum(d.counts().values()) == d.chunk_count


def test_no_change_map_reads_every_planned_chunk_silently() -> None:
    events: list[Event] = []
    plan = ExtentList([(0, 20), (500, 1)])
    d = decide_chunks(CS, 1000, plan, LAYOUT, None, ParentImage(1000, CS, plan, LAYOUT), events.append)
    assert d.read == ExtentList([(0, 2), (31, 1)]) and not d.reuse and events == []


@pytest.mark.parametrize(
    ("parent", "reason"),
    [
        (None, "no parent image"),
        (ParentImage(1024, CS, ExtentList([(0, 1000)]), LAYOUT), "device size changed (1024 -> 1000 bytes)"),
        (ParentImage(1000, 32, ExtentList([(0, 1000)]), LAYOUT), "chunk size changed"),
        (ParentImage(1000, CS, ExtentList([(0, 1000)]), None), "partition layout changed"),
        (
            ParentImage(
                1000,
                CS,
                ExtentList([(0, 1000)]),
                replace(LAYOUT, partitions=(Partition(1, 100, 700, "X", guid="G1"),)),
            ),
            "partition layout changed",
        ),
    ],
)
def test_untrustworthy_parent_means_full_read_and_event(parent: ParentImage | None, reason: str) -> None:
    events: list[Event] = []
    plan = ExtentList([(0, 1000)])
    d = decide_chunks(CS, 1000, plan, LAYOUT, ExtentList([(0, 1)]), parent, events.append)
    assert d.read == ExtentList([(0, 63)]) and not d.reuse and not d.zero
    assert [e.code for e in events] == [EventCode.DISK_IMAGE_CHANGE_MAP_IGNORED]
    assert reason in events[0].message and d.ignored_reason is not None


def test_layout_plan_stats_do_not_break_the_chain() -> None:
    plan = ExtentList([(0, 1000)])
    parent = ParentImage(1000, CS, plan, LAYOUT.with_plan({"planned_bytes": 5}))
    d = decide_chunks(CS, 1000, plan, LAYOUT, ExtentList([(40, 1)]), parent)
    assert d.read == ExtentList([(2, 1)]) and d.reuse.total_bytes == 62
