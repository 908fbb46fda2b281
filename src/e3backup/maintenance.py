"""Repository maintenance: forget by a retention policy, prune, and verify; for the CLI and agent.

``quick`` forgets snapshots by the policy and deletes packs nothing uses (cheap: no pack is
downloaded). ``full`` also repacks partly used packs over the ``max_unused`` threshold and then
checks the repository, reading ``read_data_subset`` of the packs. Everything runs under one
exclusive lock; progress goes to a ``Progress`` (stage, done and total in its ``extra``) and the
result is a JSON-ready dict, like a backup run's summary.

``run_maintenance`` follows the run contract (``e3backup.contract``). A set ``cancel`` event is
honoured at the next step of any stage (a snapshot forgotten, a pack repacked or deleted, a pack
checked): every step of a prune is crash-safe, so stopping there leaves a consistent repository
and the next run finishes the work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .api.requests import MAINTENANCE_MODES
from .contract import Cancel, OnEvent, check_cancel
from .errors import NotFoundError, UsageError
from .progress import Progress
from .repo.check import Checker
from .repo.forget import DEFAULT_GROUP_BY, ForgetPolicy, Group, apply_policy_by_group
from .repo.leftovers import remove_temporaries
from .repo.prune import Action, PrunePlan, PruneResult, crash_point, execute, plan_prune
from .repo.repository import Repository
from .repo.snapshot import Snapshot
from .store.base import FileType, Handle

MODES = MAINTENANCE_MODES


@dataclass
class MaintenanceOptions:
    mode: str = "quick"
    policy: ForgetPolicy = field(default_factory=ForgetPolicy)
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    hosts: tuple[str, ...] = ()  # only forget snapshots of these hosts (the agent's own)
    max_unused: str = "5%"
    max_repack: int | None = None
    read_data_subset: str = "10%"


def forget(
    repo: Repository,
    policy: ForgetPolicy,
    group_by: Iterable[str] = DEFAULT_GROUP_BY,
    dry_run: bool = False,
    select: Callable[[Snapshot], bool] | None = None,
) -> list[Group]:
    """Apply the policy and (unless ``dry_run``) delete the snapshot files it does not keep.

    The caller holds an exclusive lock. Only snapshot files are removed; their data stays
    until a prune. Temporary files of killed runs go too (as in prune: under the exclusive lock
    they are all abandoned), so a forget that follows a killed ``forget --prune``, and finds
    nothing left to forget, still leaves none behind.
    """
    snaps = [s for s in repo.snapshots() if select is None or select(s)]
    groups = apply_policy_by_group(snaps, policy, group_by)
    if not dry_run:
        remove_temporaries(repo.store, exclusive=True)
        for i, s in enumerate(s for g in groups for s in g.remove):
            try:
                repo.store.remove(Handle(FileType.SNAPSHOT, s.id))
            except NotFoundError:
                pass
            if i == 0:
                crash_point("forget")
    return groups


@dataclass
class RetentionResult:
    removed: list[str]
    kept: int


def apply_retention(repo: Repository, policy: ForgetPolicy, host: str, tag: str) -> RetentionResult:
    """Forget what ``policy`` does not keep among this host's snapshots tagged ``tag`` (one job's
    snapshots: other jobs sharing the repository keep their own policies). Run after each
    successful backup; the data is freed by the repository's scheduled prune, so this is cheap
    (no pack is read or rewritten) and holds the exclusive lock only for the deletions."""
    if policy.empty:
        return RetentionResult([], 0)
    with repo.lock(exclusive=True):
        groups = forget(repo, policy, select=lambda s: s.hostname == host and tag in s.tags)
    return RetentionResult([s.id for g in groups for s in g.remove], sum(len(g.keep) for g in groups))


def prune(
    repo: Repository,
    max_unused: str = "5%",
    max_repack: int | None = None,
    dry_run: bool = False,
    repack: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[PrunePlan, PruneResult | None]:
    """Plan (and unless ``dry_run`` execute) a prune; ``repack=False`` only deletes packs."""
    plan = plan_prune(repo, max_unused, max_repack)
    if not repack:
        for p in plan.by_action(Action.REPACK):
            p.action, p.reason = Action.KEEP, "repacking not requested"
            plan.stats.repack_packs -= 1
            plan.stats.repack_bytes -= p.size
            plan.stats.repack_used_bytes -= p.used_bytes
            plan.stats.unused_after += p.unused_bytes
    if dry_run:
        return plan, None
    return plan, execute(repo, plan, progress)


def _stage_reporter(progress: Progress, cancel: Cancel | None) -> Callable[[str, int, int], None]:
    """Progress of each step; also where a cancel is noticed (every step is a safe place)."""

    def report(stage: str, done: int, total: int) -> None:
        check_cancel(cancel, f"maintenance cancelled during {stage}; the repository is consistent "
                             "(each step is crash-safe) and the next maintenance finishes the work")
        progress.set_stage(stage, done, total)

    return report


def run_maintenance(
    repo: Repository,
    opts: MaintenanceOptions,
    progress: Progress | None = None,
    on_event: OnEvent | None = None,
    cancel: Cancel | None = None,
) -> dict[str, Any]:
    """Run ``quick`` or ``full`` maintenance; returns the summary (``ok`` false on check errors)."""
    if opts.mode not in MODES:
        raise UsageError(f"unknown maintenance mode {opts.mode!r}: use quick or full")
    progress = progress or Progress(mode="quiet")
    report = _stage_reporter(progress, cancel)
    start = time.monotonic()
    summary: dict[str, Any] = {"message_type": "summary", "mode": opts.mode, "policy": opts.policy.describe()}
    with repo.lock(exclusive=True):
        report("forget", 0, 1)
        removed: list[str] = []
        kept = 0
        if not opts.policy.empty:
            hosts = set(opts.hosts)
            groups = forget(repo, opts.policy, opts.group_by, select=lambda s: not hosts or s.hostname in hosts)
            removed = [s.id for g in groups for s in g.remove]
            kept = sum(len(g.keep) for g in groups)
        report("forget", 1, 1)
        summary.update({"snapshots_removed": removed, "snapshots_kept": kept})
        plan, result = prune(
            repo, opts.max_unused, opts.max_repack, repack=opts.mode == "full", progress=report
        )
        summary["prune"] = {"plan": plan.summary_json(), **(result.summary_json() if result else {})}
        summary["check"] = None
        if opts.mode == "full":
            fresh = Repository(repo.store, repo.key, repo.config, repo.key_id)
            check = Checker(fresh, progress=report).run(opts.read_data_subset)
            summary["check"] = {
                "ok": check.ok,
                "read_data_subset": opts.read_data_subset,
                "packs": check.packs_checked,
                "packs_read": check.packs_read,
                "errors": [p.message for p in check.errors],
            }
    summary["duration"] = round(time.monotonic() - start, 3)
    summary["ok"] = summary["check"] is None or summary["check"]["ok"]
    progress.set_stage("done", 1, 1)
    return summary


__all__ = ["MODES", "MaintenanceOptions", "RetentionResult", "apply_retention", "forget", "prune", "run_maintenance"]
