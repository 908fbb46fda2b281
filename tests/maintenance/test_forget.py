"""Retention policy: hand-computed cases, properties, and restic 0.14 as the judge."""

from __future__ import annotations

import json
import os
import random
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e3backup.errors import UsageError
from e3backup.repo import BlobType, Repository, Snapshot
from e3backup.repo.forget import Duration, ForgetPolicy, apply_policy, apply_policy_by_group, decide
from e3backup.repo.timefmt import format_ns
from e3backup.repo.tree import encode_tree

from ..helpers import PASSWORD, restic_bin

S = 1_000_000_000


def ts(s: str) -> int:
    return int(datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp()) * S


def snaps(*times: str, host: str = "h", tags: tuple[str, ...] = ()) -> list[Snapshot]:
    return [
        Snapshot(time=ts(t), tree=b"\0" * 32, paths=["/p"], hostname=host, tags=list(tags), id=f"{i:064x}")
        for i, t in enumerate(times)
    ]


def kept(policy: ForgetPolicy, ss: list[Snapshot]) -> list[str]:
    return [datetime.fromtimestamp(d.snapshot.time // S, UTC).strftime("%m-%d %H") for d in decide(ss, policy, UTC)
            if d.keep]


def test_duration_parse_and_go_adddate_normalisation() -> None:
    assert Duration.parse("1y2m3d4h") == Duration(1, 2, 3, 4)
    assert str(Duration.parse("2d")) == "2d"
    for bad in ("", "3", "1w", "d2", "1y 2m"):
        with pytest.raises(UsageError):
            Duration.parse(bad)
    t = datetime(2020, 3, 31, 12, tzinfo=UTC)
    assert Duration(months=1).before(t) == datetime(2020, 3, 2, 12, tzinfo=UTC)  # Feb 31 -> Mar 2 (leap)
    assert Duration(years=1).before(datetime(2020, 2, 29, tzinfo=UTC)) == datetime(2019, 3, 1, tzinfo=UTC)
    assert Duration(days=1, hours=13).before(t) == datetime(2020, 3, 29, 23, tzinfo=UTC)


def test_keep_last_and_daily_take_the_newest_of_each_bucket() -> None:
    ss = snaps("2020-01-01T10:00", "2020-01-02T10:00", "2020-01-03T10:00", "2020-01-03T11:00", "2020-01-03T12:00")
    assert kept(ForgetPolicy(keep_last=2), ss) == ["01-03 12", "01-03 11"]
    assert kept(ForgetPolicy(keep_daily=2), ss) == ["01-03 12", "01-02 10"]
    assert kept(ForgetPolicy(keep_hourly=10), ss) == ["01-03 12", "01-03 11", "01-03 10", "01-02 10", "01-01 10"]
    # keep-last counts first, then daily counts its own buckets independently
    d = decide(ss, ForgetPolicy(keep_last=1, keep_daily=2), UTC)
    assert [(x.keep, x.reasons) for x in d][:3] == [
        (True, ["last snapshot", "daily snapshot"]),
        (False, []),
        (False, []),
    ]
    assert d[3].reasons == ["daily snapshot"]


def test_weekly_uses_iso_weeks_and_yearly_monthly() -> None:
    # 2020-12-31 (Thu) and 2021-01-03 (Sun) are both ISO week 2020-W53
    ss = snaps("2020-12-28T00:00", "2020-12-31T00:00", "2021-01-03T00:00", "2021-01-04T00:00")
    assert kept(ForgetPolicy(keep_weekly=5), ss) == ["01-04 00", "01-03 00"]
    assert kept(ForgetPolicy(keep_monthly=5), ss) == ["01-04 00", "12-31 00"]
    assert kept(ForgetPolicy(keep_yearly=1), ss) == ["01-04 00"]


def test_within_is_relative_to_the_newest_snapshot_and_tags_are_uncounted() -> None:
    ss = snaps("2020-01-01T00:00", "2020-01-05T00:00", "2020-01-09T00:00")
    ss[0].tags = ["keep", "monthly"]
    assert kept(ForgetPolicy(keep_within=Duration(days=4)), ss) == ["01-09 00"]  # 01-05 is not strictly after
    assert kept(ForgetPolicy(keep_within=Duration(days=5)), ss) == ["01-09 00", "01-05 00"]
    pol = ForgetPolicy(keep_tags=(("keep", "monthly"), ("nope",)), keep_last=1)
    d = decide(ss, pol, UTC)
    assert [x.keep for x in d] == [True, False, True]
    assert d[2].reasons == ["has tags [keep, monthly]"]
    assert not decide(ss, ForgetPolicy(keep_tags=(("keep", "other"),)), UTC)[2].keep


def test_empty_policy_keeps_everything_and_groups_are_separate() -> None:
    ss = snaps("2020-01-01T00:00", "2020-01-02T00:00") + snaps("2020-01-03T00:00", host="other")
    assert all(d.keep and d.reasons == ["policy is empty"] for d in apply_policy(ss, ForgetPolicy()))
    groups = apply_policy_by_group(ss, ForgetPolicy(keep_last=1), tz=UTC)
    shape = [(g.host, g.paths, len(g.keep), len(g.remove)) for g in groups]
    assert shape == [("h", ["/p"], 1, 1), ("other", ["/p"], 1, 0)]
    assert len(apply_policy_by_group(ss, ForgetPolicy(keep_last=1), group_by=())) == 1


times = st.lists(st.integers(min_value=ts("2019-01-01T00:00"), max_value=ts("2022-01-01T00:00")), max_size=40)


@settings(max_examples=60, deadline=None)
@given(times, st.integers(0, 5), st.integers(0, 5), st.integers(0, 5), st.integers(0, 3))
def test_properties(ns: list[int], last: int, daily: int, weekly: int, monthly: int) -> None:
    ss = [Snapshot(time=t, tree=b"", id=f"{i:064x}") for i, t in enumerate(ns)]
    pol = ForgetPolicy(keep_last=last, keep_daily=daily, keep_weekly=weekly, keep_monthly=monthly)
    ds = decide(ss, pol, UTC)
    assert sorted(d.snapshot.id for d in ds) == sorted(s.id for s in ss)
    assert all(d.keep == bool(d.reasons) for d in ds)
    n_kept = sum(d.keep for d in ds)
    assert n_kept <= last + daily + weekly + monthly or pol.empty
    if ss and not pol.empty:
        assert ds[0].keep  # the newest snapshot always opens every bucket
    assert sum("last snapshot" in d.reasons for d in ds) == min(last, len(ss))
    days = {datetime.fromtimestamp(t // S, UTC).date() for t in ns}
    assert sum("daily snapshot" in d.reasons for d in ds) == min(daily, len(days))
    if pol.empty:
        return
    # a larger budget never keeps less
    more = ForgetPolicy(keep_last=last + 1, keep_daily=daily + 1, keep_weekly=weekly, keep_monthly=monthly)
    assert {d.snapshot.id for d in ds if d.keep} <= {d.snapshot.id for d in decide(ss, more, UTC) if d.keep}


# -- restic 0.14 decides the same -------------------------------------------------------------


@pytest.mark.restic
def test_same_decisions_as_restic(repo: Repository, repo_path: Path) -> None:
    rng = random.Random(7)
    with repo.lock(), repo.writer() as w:
        tree, _ = w.save(BlobType.TREE, encode_tree([]))
    base = ts("2019-11-20T00:00")
    made = []
    for _ in range(60):
        t = base + rng.randrange(0, 400 * 86400) * S + rng.randrange(0, S)
        host = rng.choice(["alpha", "beta"])
        tags = rng.choice([[], ["daily"], ["keep", "x"]])
        s = Snapshot(time=t, tree=tree, paths=[rng.choice(["/a", "/b"])], hostname=host, tags=tags)
        repo.save_snapshot(s)
        made.append(s)
    cases: list[tuple[list[str], ForgetPolicy, tuple[str, ...]]] = [
        (["--keep-last", "3"], ForgetPolicy(keep_last=3), ("host", "paths")),
        (["--keep-daily", "7", "--keep-weekly", "4"], ForgetPolicy(keep_daily=7, keep_weekly=4), ("host", "paths")),
        (
            ["--keep-hourly", "5", "--keep-monthly", "6", "--keep-yearly", "2", "--group-by", "host"],
            ForgetPolicy(keep_hourly=5, keep_monthly=6, keep_yearly=2),
            ("host",),
        ),
        (["--keep-within", "1m15d", "--group-by", "tags"], ForgetPolicy(keep_within=Duration(0, 1, 15)), ("tags",)),
        (
            ["--keep-tag", "keep,x", "--keep-last", "1", "--group-by", "host,paths,tags"],
            ForgetPolicy(keep_tags=(("keep", "x"),), keep_last=1),
            ("host", "paths", "tags"),
        ),
    ]
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "TZ": "UTC"}
    for args, policy, group_by in cases:
        p = subprocess.run(
            [restic_bin(), "-r", str(repo_path), "--no-cache", "--no-lock", "forget", "--dry-run", "--json", *args],
            env=env,
            capture_output=True,
            check=True,
        )
        theirs: dict[str, bool] = {}
        reasons: dict[str, list[str]] = {}
        for g in json.loads(p.stdout):
            theirs.update({s["id"]: True for s in g["keep"]})
            theirs.update({s["id"]: False for s in g["remove"] or []})
            reasons.update({r["snapshot"]["time"]: r["matches"] for r in g["reasons"]})
        decisions = apply_policy(made, policy, group_by, UTC)
        assert {d.snapshot.id: d.keep for d in decisions} == theirs, args
        assert {format_ns(d.snapshot.time): d.reasons for d in decisions if d.keep} == reasons, args
