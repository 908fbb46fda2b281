"""Maintenance commands: forget, prune, maintenance."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import E3Error, UsageError
from ..maintenance import MODES, MaintenanceOptions, forget, prune, run_maintenance
from ..progress import Progress
from ..repo.forget import Duration, ForgetPolicy, Group, parse_group_by
from ..repo.prune import Action, PrunePlan, PruneResult, parse_max_unused, parse_size
from ..repo.repository import Repository
from ..repo.timefmt import format_ns
from .context import AppContext
from .output import human_bytes, print_json

T = TypeVar("T")

pass_app = click.make_pass_decorator(AppContext)


def flag(name: str, parse: Callable[[str], T], value: str) -> T:
    """Parse a flag's value; the repository layer's error, prefixed with the flag it came from
    (the layer itself names no CLI flag: the agent calls it too)."""
    try:
        return parse(value)
    except UsageError as e:
        raise UsageError(f"{name}: {e}") from None


def _policy_options(f: Callable[..., Any]) -> Callable[..., Any]:
    periods = [("l", "last", ""), ("H", "hourly", "hourly "), ("d", "daily", "daily ")]
    periods += [("w", "weekly", "weekly "), ("m", "monthly", "monthly "), ("y", "yearly", "yearly ")]
    opts = [
        click.option(
            f"-{short}", f"--keep-{name}", type=click.IntRange(0), default=0, help=f"Keep the last N {what}snapshots."
        )
        for short, name, what in periods
    ]
    opts += [
        click.option("--keep-within", default="", metavar="DURATION", help="Keep snapshots newer than 1y2m3d4h."),
        click.option("--keep-tag", "keep_tags", multiple=True, help="Keep snapshots with these tags (a,b = both)."),
        click.option("--group-by", default="host,paths", show_default=True, help="Group by host, paths and/or tags."),
        click.option("--host", "hosts", multiple=True, help="Only consider snapshots of this host."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _policy(kw: dict[str, Any]) -> ForgetPolicy:
    return ForgetPolicy(
        keep_last=kw.pop("keep_last"),
        keep_hourly=kw.pop("keep_hourly"),
        keep_daily=kw.pop("keep_daily"),
        keep_weekly=kw.pop("keep_weekly"),
        keep_monthly=kw.pop("keep_monthly"),
        keep_yearly=kw.pop("keep_yearly"),
        keep_within=Duration.parse(w) if (w := kw.pop("keep_within")) else Duration(),
        keep_tags=tuple(tuple(t for t in tl.split(",") if t) for tl in kw.pop("keep_tags")),
    )


def _prune_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--max-repack-size", metavar="SIZE", help="Repack at most this much (e.g. 2G).")(f)
    f = click.option(
        "--max-unused", default="5%", show_default=True, help="Unused data to tolerate: N%, a size or unlimited."
    )(f)
    return f


def _stage_printer(enabled: bool) -> Callable[[str, int, int], None]:
    def report(stage: str, done: int, total: int) -> None:
        if enabled:
            click.echo(f"\r{stage}: {done}/{total}", err=True, nl=done == total)

    return report


def _snap_line(s: Any, reasons: list[str] | None = None) -> str:
    t = format_ns(s.time)[:19].replace("T", " ")
    line = f"{s.short_id:<10}{t:<21}{s.hostname:<16}{','.join(s.tags):<16}{', '.join(s.paths)}"
    return line + (f"   [{', '.join(reasons)}]" if reasons else "")


def _print_groups(groups: list[Group], dry_run: bool) -> None:
    for g in groups:
        what = []
        if g.host is not None:
            what.append(f"host [{g.host}]")
        if g.paths is not None:
            what.append(f"paths [{', '.join(g.paths)}]")
        if g.tags is not None:
            what.append(f"tags [{', '.join(g.tags)}]")
        click.echo(f"snapshots for ({', '.join(what) or 'all'}):")
        keep = [d for d in g.decisions if d.keep]
        remove = [d for d in g.decisions if not d.keep]
        click.echo(f"keep {len(keep)} snapshots:")
        for d in keep:
            click.echo("  " + _snap_line(d.snapshot, d.reasons))
        if remove:
            click.echo(f"{'would remove' if dry_run else 'remove'} {len(remove)} snapshots:")
            for d in remove:
                click.echo("  " + _snap_line(d.snapshot, ["matches no keep rule"]))
        click.echo()


def _groups_json(groups: list[Group]) -> list[dict[str, Any]]:
    return [
        {
            "tags": g.tags,
            "host": g.host,
            "paths": g.paths,
            "keep": [d.snapshot.public_json() for d in g.decisions if d.keep],
            "remove": [d.snapshot.public_json() for d in g.decisions if not d.keep] or None,
            "reasons": [
                {"snapshot": d.snapshot.public_json(), "matches": d.reasons} for d in g.decisions if d.keep
            ],
        }
        for g in groups
    ]


def _print_plan(plan: PrunePlan) -> None:
    st = plan.stats
    click.echo(
        f"{st.snapshots} snapshots use {st.used_blobs} blobs, {human_bytes(st.used_bytes)}; "
        f"unused: {human_bytes(st.unused_bytes)} ({st.duplicate_blobs} duplicate blobs)"
    )
    if st.unindexed_packs:
        click.echo(f"{st.unindexed_packs} packs are in no index")
    if st.missing_packs:
        click.echo(f"{st.missing_packs} indexed packs are missing and hold nothing used: dropped from the index")
    click.echo(f"to delete:  {st.delete_packs} packs, {human_bytes(st.delete_bytes)}")
    click.echo(
        f"to repack:  {st.repack_packs} packs, {human_bytes(st.repack_bytes)} "
        f"({human_bytes(st.repack_used_bytes)} still used, copied)"
    )
    click.echo(f"unused after prune: {human_bytes(st.unused_after)} of {human_bytes(st.total_bytes)} stored")
    for p in plan.packs.values():
        if p.action is not Action.KEEP:
            click.echo(f"  {p.action.value:<7}{p.id[:12]}  {human_bytes(p.size):>12}  {p.reason}", err=False)


def _print_result(r: PruneResult) -> None:
    click.echo(
        f"deleted {r.packs_deleted} packs ({human_bytes(r.bytes_deleted)}), repacked {r.packs_repacked} into "
        f"{r.packs_written} new packs ({human_bytes(r.bytes_written)}), rewrote the index "
        f"({r.index_files_written} written, {r.index_files_deleted} removed)\n"
        f"freed {human_bytes(r.bytes_freed)} in {r.duration:.1f}s"
    )


def _run_prune(
    repo: Repository, max_unused: str, max_repack_size: str | None, dry_run: bool, as_json: bool
) -> dict[str, Any]:
    flag("--max-unused", parse_max_unused, max_unused)
    max_repack = flag("--max-repack-size", parse_size, max_repack_size) if max_repack_size else None
    show = not as_json and sys.stderr.isatty()
    plan, result = prune(repo, max_unused, max_repack, dry_run, progress=_stage_printer(show))
    if not as_json:
        _print_plan(plan)
        if result is not None:
            _print_result(result)
        elif dry_run:
            click.echo("dry run: nothing was changed")
    return {"plan": plan.summary_json(), "result": result.summary_json() if result else None}


@click.command(name="forget")
@_policy_options
@click.option("-n", "--dry-run", is_flag=True, help="Only show what would be removed.")
@click.option("--prune", "do_prune", is_flag=True, help="Prune the repository afterwards.")
@_prune_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (restic's forget shape).")
@pass_app
def forget_cmd(
    app: AppContext,
    /,
    dry_run: bool,
    do_prune: bool,
    max_unused: str,
    max_repack_size: str | None,
    as_json: bool,
    group_by: str,
    hosts: tuple[str, ...],
    **kw: Any,
) -> None:
    """Remove snapshots by a retention policy (and optionally prune)."""
    policy = _policy(kw)
    fields = flag("--group-by", parse_group_by, group_by)
    repo = app.open_repo()
    with repo.lock(exclusive=True):
        if policy.empty:
            groups: list[Group] = []
            if not as_json:
                click.echo("no policy was specified, no snapshots will be removed")
        else:
            if not as_json:
                click.echo(f"applying policy: {policy.describe()}")
            groups = forget(repo, policy, fields, dry_run, lambda s: not hosts or s.hostname in hosts)
        removed = sum(len(g.remove) for g in groups)
        pruned = None
        if do_prune and not dry_run and removed:  # as restic: prune only after removing
            pruned = _run_prune(repo, max_unused, max_repack_size, False, as_json)
    if as_json:
        out: Any = _groups_json(groups)
        if pruned is not None:
            out = {"groups": out, "prune": pruned}
        print_json(out)
    else:
        _print_groups(groups, dry_run)
        click.echo(f"{'would remove' if dry_run else 'removed'} {removed} snapshots")


@click.command(name="prune")
@_prune_options
@click.option("-n", "--dry-run", is_flag=True, help="Only show what would be done.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan and result as JSON.")
@pass_app
def prune_cmd(app: AppContext, max_unused: str, max_repack_size: str | None, dry_run: bool, as_json: bool) -> None:
    """Delete data no snapshot uses; repack partly used packs."""
    repo = app.open_repo()
    with repo.lock(exclusive=True):
        out = _run_prune(repo, max_unused, max_repack_size, dry_run, as_json)
    if as_json:
        print_json(out)


@click.command(name="maintenance")
@click.argument("mode", type=click.Choice(MODES))
@_policy_options
@_prune_options
@click.option("--read-data-subset", default="10%", show_default=True, help="Packs to read in full mode.")
@click.option("--json", "as_json", is_flag=True, help="JSON progress lines and a JSON summary.")
@pass_app
def maintenance_cmd(
    app: AppContext,
    /,
    mode: str,
    max_unused: str,
    max_repack_size: str | None,
    read_data_subset: str,
    as_json: bool,
    group_by: str,
    hosts: tuple[str, ...],
    **kw: Any,
) -> None:
    """Run QUICK (forget + delete unused packs) or FULL (+ repack + check) maintenance."""
    flag("--max-unused", parse_max_unused, max_unused)
    opts = MaintenanceOptions(
        mode=mode,
        policy=_policy(kw),
        group_by=flag("--group-by", parse_group_by, group_by),
        hosts=hosts,
        max_unused=max_unused,
        max_repack=flag("--max-repack-size", parse_size, max_repack_size) if max_repack_size else None,
        read_data_subset=read_data_subset,
    )
    repo = app.open_repo()
    with Progress(mode="json" if as_json else "auto", out=sys.stdout if as_json else sys.stderr) as progress:
        summary = run_maintenance(repo, opts, progress)
    if as_json:
        print_json(summary)
    else:
        pr = summary["prune"]
        click.echo(
            f"{mode} maintenance: {opts.policy.describe()}\n"
            f"removed {len(summary['snapshots_removed'])} snapshots, kept {summary['snapshots_kept']}\n"
            f"deleted {pr.get('packs_deleted', 0)} packs, repacked {pr.get('packs_repacked', 0)}, "
            f"freed {human_bytes(pr.get('bytes_freed', 0))}"
        )
        if summary["check"] is not None:
            c = summary["check"]
            click.echo(f"check (read {c['read_data_subset']}): {'ok' if c['ok'] else 'ERRORS'}")
            for e in c["errors"]:
                click.echo(f"error: {e}", err=True)
    if not summary["ok"]:
        raise E3Error("maintenance check found errors")


COMMANDS = [forget_cmd, prune_cmd, maintenance_cmd]
