"""The plan and the max_delete guard, pure: which keys are new, changed, kept or deleted."""

from __future__ import annotations

import pytest

from e3backup.engines.sync.plan import guard_allows, make_plan
from e3backup.engines.sync.source import Scan, SourceFile, key_prefixes, source_name
from e3backup.errors import UsageError
from e3backup.sources.excludes import Excluder


def scan_of(keys: list[str], roots: dict[str, str] | None = None, protected: list[str] | None = None) -> Scan:
    return Scan(files={k: SourceFile(f"/src/{k}", 1, 1) for k in keys}, roots=roots or {"": "/src"},
                protected=protected or [])


@pytest.mark.parametrize(("deletes", "dest", "percent", "allowed"), [
    (0, 0, 50, True), (0, 10, 0, True), (5, 10, 50, True), (6, 10, 50, False), (1, 1, 50, False),
    (10, 10, 100, True), (1, 1000, 0, False), (1, 3, 34, True), (2, 3, 66, False),
])
def test_guard_threshold(deletes: int, dest: int, percent: int, allowed: bool) -> None:
    assert guard_allows(deletes, dest, percent) is allowed


def test_plan_sorts_keys_and_honours_the_guard() -> None:
    scan = scan_of(["a", "b", "c"])
    plan = make_plan(scan, ["b", "c", "x", "y"], {"c"}, excluder=Excluder(), delete=True, max_delete_percent=50)
    assert (plan.new, plan.changed, plan.unchanged, plan.delete, plan.refused) == (["a"], ["c"], 1, ["x", "y"], 0)
    plan = make_plan(scan, ["b", "x", "y", "z"], set(), excluder=Excluder(), delete=True, max_delete_percent=50)
    assert (plan.delete, plan.refused) == ([], 3)
    plan = make_plan(scan, ["x"], set(), excluder=Excluder(), delete=False, max_delete_percent=50)
    assert (plan.delete, plan.kept, plan.refused) == ([], 1, 0)


def test_protected_and_excluded_destination_keys_are_never_deleted() -> None:
    scan = scan_of(["docs/a"], roots={"docs/": "/data/docs", "mail/": "/data/mail"}, protected=["mail/", "docs/x/y"])
    dest = ["docs/a", "docs/old.tmp", "docs/x/y", "docs/x/yz", "mail/1", "other/f"]
    plan = make_plan(scan, dest, set(), excluder=Excluder(["*.tmp"]), delete=True, max_delete_percent=100)
    assert plan.delete == ["docs/x/yz", "other/f"]  # a protected file is that file, not a prefix


def test_source_names_and_clashes() -> None:
    assert [source_name(p) for p in ("/home/alice/", "C:\\Users\\", "D:\\", "/")] == ["alice", "Users", "D", "root"]
    assert key_prefixes(("/one/place",)) == {"": "/one/place"}
    with pytest.raises(UsageError, match="would share the destination folder 'docs/'"):
        key_prefixes(("/a/docs", "/b/docs"))
