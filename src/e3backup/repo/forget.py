"""Retention policy: which snapshots ``forget`` keeps, with restic 0.14's semantics.

Snapshots are grouped (by host and paths unless told otherwise) and each group is walked newest
first. A ``keep_<period>`` rule has a budget of N buckets (hour, day, ISO week, month, year, or
one per snapshot for ``keep_last``): a snapshot whose bucket differs from the previous kept
snapshot's bucket for that rule is kept and uses one unit of the budget, so the newest snapshot
of each bucket counts. ``keep_within`` keeps everything newer than the group's newest snapshot
minus the duration; ``keep_tags`` keeps every snapshot carrying all tags of one of the lists.
Buckets use local time unless a zone is given. An empty policy keeps everything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from ..errors import UsageError
from .snapshot import Snapshot

GROUP_FIELDS = ("host", "paths", "tags")
DEFAULT_GROUP_BY = ("host", "paths")


@dataclass(frozen=True)
class Duration:
    """restic's calendar duration ``1y2m3d4h`` (years, months, days, hours)."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    @classmethod
    def parse(cls, s: str) -> Duration:
        s = s.strip()
        parts = re.findall(r"(\d+)([ymdh])", s)
        if not s or "".join(n + u for n, u in parts) != s:
            raise UsageError(f"invalid duration {s!r}: expected e.g. 1y2m3d4h")
        vals = {"y": 0, "m": 0, "d": 0, "h": 0}
        for n, u in parts:
            vals[u] += int(n)
        return cls(vals["y"], vals["m"], vals["d"], vals["h"])

    def __str__(self) -> str:
        out = "".join(f"{v}{u}" for v, u in zip(self.values(), "ymdh", strict=True) if v)
        return out or "0h"

    def values(self) -> tuple[int, int, int, int]:
        return (self.years, self.months, self.days, self.hours)

    @property
    def zero(self) -> bool:
        return not any(self.values())

    def before(self, t: datetime) -> datetime:
        """``t`` minus this duration, normalised like Go's ``AddDate`` (Mar 31 - 1m = Mar 2/3)."""
        months = t.year * 12 + (t.month - 1) - self.years * 12 - self.months
        y, m = divmod(months, 12)
        day = date(y, m + 1, 1).toordinal() + t.day - 1 - self.days
        d = date.fromordinal(day)
        shifted = t.replace(year=d.year, month=d.month, day=d.day)
        return shifted - timedelta(hours=self.hours)


@dataclass(frozen=True)
class ForgetPolicy:
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within: Duration = field(default_factory=Duration)
    keep_tags: tuple[tuple[str, ...], ...] = ()  # keep a snapshot having all tags of any one list

    @property
    def empty(self) -> bool:
        counts = (self.keep_last, self.keep_hourly, self.keep_daily, self.keep_weekly)
        return not any(counts) and not self.keep_monthly and not self.keep_yearly and (
            self.keep_within.zero and not self.keep_tags
        )

    def describe(self) -> str:
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.keep_last, "latest"),
                (self.keep_hourly, "hourly"),
                (self.keep_daily, "daily"),
                (self.keep_weekly, "weekly"),
                (self.keep_monthly, "monthly"),
                (self.keep_yearly, "yearly"),
            )
            if n
        ]
        s = f"{', '.join(parts)} snapshots" if parts else ""
        if self.keep_tags:
            s += (" and " if s else "") + "all snapshots with tags " + " or ".join(
                ",".join(t) for t in self.keep_tags
            )
        if not self.keep_within.zero:
            s += (" and " if s else "") + f"all snapshots within {self.keep_within} of the newest"
        return "keep " + (s or "everything (empty policy)")


@dataclass
class Decision:
    snapshot: Snapshot
    keep: bool
    reasons: list[str] = field(default_factory=list)


@dataclass
class Group:
    """Snapshots sharing the ``group_by`` fields, with the decision for each (newest first)."""

    host: str | None
    paths: list[str] | None
    tags: list[str] | None
    decisions: list[Decision] = field(default_factory=list)

    @property
    def keep(self) -> list[Snapshot]:
        return [d.snapshot for d in self.decisions if d.keep]

    @property
    def remove(self) -> list[Snapshot]:
        return [d.snapshot for d in self.decisions if not d.keep]


def parse_group_by(spec: str) -> tuple[str, ...]:
    """``host,paths`` -> ("host", "paths"); the empty string groups nothing."""
    fields = tuple(f.strip() for f in spec.split(",") if f.strip())
    for f in fields:
        if f not in GROUP_FIELDS:
            raise UsageError(f"invalid grouping field {f!r}: use host, paths and/or tags")
    return fields


def group_snapshots(snaps: Iterable[Snapshot], group_by: Iterable[str] = DEFAULT_GROUP_BY) -> list[Group]:
    by = set(group_by)
    groups: dict[tuple[object, ...], Group] = {}
    for s in snaps:
        host = s.hostname if "host" in by else None
        paths = sorted(s.paths) if "paths" in by else None
        tags = sorted(s.tags) if "tags" in by else None
        key = (host, tuple(paths) if paths is not None else None, tuple(tags) if tags is not None else None)
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(host, paths, tags)
        g.decisions.append(Decision(s, True))
    return list(groups.values())


Bucketer = Callable[[datetime, int], int]


def _bucketers() -> list[tuple[str, Bucketer]]:
    return [
        ("last snapshot", lambda t, nr: nr),
        ("hourly snapshot", lambda t, nr: ((t.year * 100 + t.month) * 100 + t.day) * 100 + t.hour),
        ("daily snapshot", lambda t, nr: (t.year * 100 + t.month) * 100 + t.day),
        ("weekly snapshot", lambda t, nr: t.isocalendar()[0] * 100 + t.isocalendar()[1]),
        ("monthly snapshot", lambda t, nr: t.year * 100 + t.month),
        ("yearly snapshot", lambda t, nr: t.year),
    ]


def _local(ns: int, tz: tzinfo | None) -> datetime:
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz)
    return dt.replace(microsecond=(ns % 1_000_000_000) // 1000)


def decide(snaps: list[Snapshot], policy: ForgetPolicy, tz: tzinfo | None = None) -> list[Decision]:
    """Apply the policy to one group; returns decisions newest first."""
    ordered = sorted(snaps, key=lambda s: s.time, reverse=True)
    if policy.empty:
        return [Decision(s, True, ["policy is empty"]) for s in ordered]
    if not ordered:
        return []
    counts = [
        policy.keep_last,
        policy.keep_hourly,
        policy.keep_daily,
        policy.keep_weekly,
        policy.keep_monthly,
        policy.keep_yearly,
    ]
    last: list[int | None] = [None] * len(counts)
    buckets = _bucketers()
    cutoff = None
    if not policy.keep_within.zero:
        cutoff = policy.keep_within.before(_local(ordered[0].time, tz))
    out = []
    for nr, s in enumerate(ordered):
        t = _local(s.time, tz)
        reasons = [f"has tags [{', '.join(tl)}]" for tl in policy.keep_tags if set(tl) <= set(s.tags)]
        if cutoff is not None and t > cutoff:
            reasons.append(f"within {policy.keep_within}")
        for i, (reason, bucket) in enumerate(buckets):
            if counts[i] > 0:
                val = bucket(t, nr)
                if val != last[i]:
                    last[i] = val
                    counts[i] -= 1
                    reasons.append(reason)
        out.append(Decision(s, bool(reasons), reasons))
    return out


def apply_policy_by_group(
    snaps: Iterable[Snapshot],
    policy: ForgetPolicy,
    group_by: Iterable[str] = DEFAULT_GROUP_BY,
    tz: tzinfo | None = None,
) -> list[Group]:
    """Group the snapshots and decide, per group, which to keep and why."""
    groups = group_snapshots(snaps, group_by)
    for g in groups:
        g.decisions = decide([d.snapshot for d in g.decisions], policy, tz)
    return groups


def apply_policy(
    snaps: Iterable[Snapshot],
    policy: ForgetPolicy,
    group_by: Iterable[str] = DEFAULT_GROUP_BY,
    tz: tzinfo | None = None,
) -> list[Decision]:
    """Every snapshot's decision, group after group, each group newest first."""
    return [d for g in apply_policy_by_group(snaps, policy, group_by, tz) for d in g.decisions]


__all__ = [
    "DEFAULT_GROUP_BY",
    "Decision",
    "Duration",
    "ForgetPolicy",
    "Group",
    "apply_policy",
    "apply_policy_by_group",
    "decide",
    "group_snapshots",
    "parse_group_by",
]
