"""Disk image commands: the ``image`` group (``image backup``; restore/export join it later)."""

from __future__ import annotations

import json
import sys
import threading

import click

from ..events import Event
from ..progress import Progress
from .context import AppContext
from .output import human_bytes, print_json

pass_app = click.make_pass_decorator(AppContext)


@click.group()
def image() -> None:
    """Back up (and restore) whole disks: block devices and image files."""


@image.command("backup")
@click.argument("source")
@click.option("--parent", help="Image snapshot to build on (default: latest of this host and source).")
@click.option(
    "--changed-extents",
    type=click.Path(dir_okay=False, exists=True),
    help="Change map: JSON list of [offset, length] written since the parent; other chunks are reused.",
)
@click.option(
    "--read-plan",
    type=click.Choice(["auto", "full"]),
    default="auto",
    show_default=True,
    help="auto: used blocks of known file systems; full: every byte.",
)
@click.option("--parallel", type=click.IntRange(1, 32), help="Reader threads (default: policy, else 2).")
@click.option(
    "--strict-read-errors",
    is_flag=True,
    default=None,
    help="Fail on the first read error instead of storing zeros (env AGENT_DISK_IMAGE_STRICT_READ_ERRORS).",
)
@click.option(
    "--snapshot",
    type=click.Choice(["auto", "lvm", "none"]),
    default="auto",
    show_default=True,
    help="Point-in-time snapshot of the source before reading.",
)
@click.option("--chunk-size", default=None, help="Fixed chunk size, e.g. 4M (default 4 MiB).")
@click.option("--tag", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option("--host", help="Hostname to record (default: this machine's).")
@click.option("--json", "as_json", is_flag=True, help="JSON progress, event and summary lines.")
@pass_app
def backup(
    app: AppContext,
    source: str,
    parent: str | None,
    changed_extents: str | None,
    read_plan: str,
    parallel: int | None,
    strict_read_errors: bool | None,
    snapshot: str,
    chunk_size: str | None,
    tags: tuple[str, ...],
    host: str | None,
    as_json: bool,
) -> None:
    """Back up SOURCE (a block device or an image file) as one disk image snapshot."""
    # imported here: the engine and the sources are heavy, and every other command starts faster
    from ..engines.disk_image import ImageBackupOptions, parse_size, run_image_backup

    extra = {"chunk_size": parse_size(chunk_size)} if chunk_size else {}
    opts = ImageBackupOptions(
        source=source,
        parent=parent,
        changed_extents=changed_extents,
        read_plan=read_plan,
        parallel=parallel,
        strict_read_errors=True if strict_read_errors else None,
        snapshot=snapshot,
        tags=tuple(t for tag in tags for t in tag.split(",") if t),
        host=host,
        **extra,  # type: ignore[arg-type]
    )
    out = sys.stdout if as_json else sys.stderr
    out_lock = threading.Lock()

    def on_event(e: Event) -> None:
        with out_lock:
            if as_json:
                out.write(json.dumps({"message_type": "event", **e.to_json()}) + "\n")
                out.flush()
            else:
                click.echo(f"{e.effective_level().value}: {e.message}", err=True)

    repo = app.open_repo()
    with Progress(mode="json" if as_json else "auto", out=out) as progress:
        result = run_image_backup(repo, opts, progress, on_event)
    if as_json:
        print_json(result.summary_json())
        return
    kind = "full" if result.full else f"incremental (parent {result.parent_id[:8]})"
    click.echo(
        f"Device: {result.source} ({human_bytes(result.device_size)}), {kind}\n"
        f"Read {human_bytes(result.bytes_read)} of {human_bytes(result.plan_bytes)} planned; "
        f"chunks: {result.chunks_new} new, {result.chunks_known} known, {result.chunks_reused} reused, "
        f"{result.chunks_zero} zero\n"
        f"Added to the repository: {human_bytes(result.bytes_added)} ({human_bytes(result.bytes_stored)} stored)\n"
        f"in {result.duration:.1f}s; snapshot {result.snapshot_id[:8]} saved"
    )


COMMANDS = [image]
