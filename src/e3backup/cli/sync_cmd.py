"""``e3backup sync SOURCE... DEST``: mirror folders as plain files to a bucket or a folder."""

from __future__ import annotations

import sys
import threading

import click

from ..engines.sync import Compare, LocalTarget, S3Target, SyncOptions, SyncResult, run_sync
from ..errors import E3Error, UsageError
from ..events import Event
from ..progress import Progress
from ..sources.excludes import Excluder
from .context import AppContext
from .output import human_bytes, print_json

pass_app = click.make_pass_decorator(AppContext)


class PartialSync(E3Error):
    """Some files could not be synced, or the guard refused deletions (exit code 3, as a backup
    with unreadable files)."""

    exit_code = 3


def target_for(dest: str, app: AppContext) -> S3Target | LocalTarget:
    if not dest.startswith("s3:"):
        if "limit_download" in app.store_options or "region" in app.store_options:
            raise UsageError("--limit-download and --region do not apply to a sync to a local folder")
        return LocalTarget(dest)
    from ..store.s3_location import parse_s3_url

    loc = parse_s3_url(dest)
    if "limit_download" in app.store_options:
        raise UsageError("--limit-download does not apply to sync (it only uploads)")
    so = app.store_options
    return S3Target(loc.endpoint, loc.bucket, loc.prefix, region=so.get("region"),
                    ca_bundle=so.get("ca_bundle"), insecure_tls=bool(so.get("insecure_tls")))


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("-e", "--exclude", "excludes", multiple=True, help="Exclude a pattern (repeatable; as backup).")
@click.option("--exclude-file", "exclude_files", multiple=True, help="Read exclude patterns from a file.")
@click.option("--checksum", is_flag=True, help="Compare files by size and MD5 instead of size and "
              "modification time (reads every source file).")
@click.option("--keep-deleted", is_flag=True, help="Keep files in DEST that are gone from the source.")
@click.option("--max-delete", type=click.IntRange(0, 100), default=50, show_default=True, metavar="PERCENT",
              help="Delete nothing when more than this share of DEST's files would go (100: no limit).")
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be copied and deleted; change nothing.")
@click.option("--transfers", type=click.IntRange(1, 64), default=None,
              help="Parallel transfers (default 8; or the global --upload-connections).")
@click.option("--json", "as_json", is_flag=True, help="JSON progress and event lines and a JSON summary.")
@pass_app
def sync(app: AppContext, paths: tuple[str, ...], excludes: tuple[str, ...], exclude_files: tuple[str, ...],
         checksum: bool, keep_deleted: bool, max_delete: int, dry_run: bool, transfers: int | None,
         as_json: bool) -> None:
    """Mirror SOURCE folders to DEST (s3:http(s)://HOST/BUCKET[/PREFIX] or a folder), one way.

    One source's content lands directly in DEST; several sources each get a folder named after
    them. New and changed files are copied, files gone from the sources are deleted from DEST
    (unless --keep-deleted). S3 credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    or the AWS config files; the global --limit-upload limits the bandwidth.
    """
    if len(paths) < 2:
        raise click.UsageError("give at least one SOURCE and the DEST")
    from ..store.retry import RetryPolicy

    *sources, dest = paths
    target = target_for(dest, app)
    state_dir = None
    if isinstance(target, S3Target) and not app.no_cache:
        from ..repo.cache import default_cache_dir  # where the listing cache lives (a bucket only)

        state_dir = default_cache_dir()
    options = SyncOptions(
        sources=tuple(sources),
        target=target,
        excluder=Excluder.from_options(excludes, exclude_files),
        compare=Compare.CHECKSUM if checksum else Compare.MTIME,
        delete=not keep_deleted,
        max_delete_percent=max_delete,
        dry_run=dry_run,
        transfers=transfers or int(app.store_options.get("upload_connections", 8)),
        limit_upload=app.store_options.get("limit_upload"),
        state_dir=state_dir,
        retry=RetryPolicy(max_attempts=10_000, max_time=app.retry_max_time)
        if app.retry_max_time is not None else None,
    )

    def on_event(ev: Event) -> None:
        if as_json:
            print_json({"message_type": "event", **ev.to_json()})
        elif ev.effective_level().value != "info":
            click.echo(f"{ev.code.value}: {ev.message}", err=True)

    cancel = threading.Event()
    with Progress(mode="json" if as_json else "auto", out=sys.stdout if as_json else sys.stderr) as progress:
        try:
            result = run_sync(options, progress, on_event, cancel)
        except BaseException:
            cancel.set()
            raise
    _report(result, as_json)
    if not result.ok:
        raise PartialSync(f"{len(result.errors)} error(s)"
                          + (f", {result.deletes_refused} deletion(s) refused" if result.deletes_refused else ""))


def _report(r: SyncResult, as_json: bool) -> None:
    if as_json:
        print_json(r.summary_json())
        return
    what = "Would copy" if r.dry_run else "Copied"
    click.echo(f"{what}: {r.files_new} new, {r.files_changed} changed ({human_bytes(r.bytes_transferred)} sent); "
               f"{r.files_unchanged} unchanged\n"
               f"{'Would delete' if r.dry_run else 'Deleted'}: {r.files_deleted}"
               + (f"; kept {r.files_kept} gone from the source" if r.files_kept else "")
               + (f"; refused {r.deletes_refused} (max-delete)" if r.deletes_refused else "")
               + f"\nDestination: {r.destination} ({r.duration:.1f} s)")


__all__ = ["sync"]
