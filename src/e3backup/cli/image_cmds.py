"""Disk image commands: the ``image`` group (``image backup``, ``restore``, ``export``, ``serve``, ``boot``)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click

from ..errors import E3Error
from ..events import Event, EventCode, Level
from ..progress import Progress
from .context import AppContext
from .output import human_bytes, print_json
from .ticks import wait_in_ticks

pass_app = click.make_pass_decorator(AppContext)


@click.group()
def image() -> None:
    """Back up (and restore) whole disks: block devices and image files."""


@image.command("backup")
@click.argument("source")
@click.option(
    "--parent", help="Image snapshot to build on (default, or latest: the newest image of this host and source)."
)
@click.option(
    "--changed-extents",
    type=click.Path(dir_okay=False, exists=True),
    help="Change map: JSON list of [offset, length] written since the parent; other chunks are reused.",
)
@click.option(
    "--change-tracking",
    type=click.Choice(["auto", "off"]),
    default="auto",
    show_default=True,
    help="auto: incrementals read only what the file systems changed (NTFS MFT, ext4 inodes); off: every used block.",
)
@click.option(
    "--read-plan",
    type=click.Choice(["auto", "full"]),
    default="auto",
    show_default=True,
    help="auto: used blocks of known file systems; full: every byte.",
)
@click.option("--parallel", type=click.IntRange(1, 64), default=2, show_default=True, help="Reader threads.")
@click.option(
    "--strict-read-errors",
    is_flag=True,
    default=None,
    help="Fail on the first read error instead of storing zeros (unset: env AGENT_DISK_IMAGE_STRICT_READ_ERRORS).",
)
@click.option(
    "--stall-seconds",
    type=click.IntRange(1, 86_400),
    default=300,
    show_default=True,
    help="No progress this long before the last ~1 % gives DISK_IMAGE_STALLED.",
)
@click.option("--fail-on-stall", is_flag=True, help="A DISK_IMAGE_STALLED fails the backup.")
@click.option(
    "--snapshot",
    type=click.Choice(["auto", "lvm", "none"]),
    default="auto",
    show_default=True,
    help="Point-in-time snapshot of the source before reading.",
)
@click.option(
    "--chunk-size",
    default=None,
    help="Fixed chunk size, e.g. 1M (default: the parent's; new chains 1 MiB, 2 above 512 GiB, 4 above 1 TiB).",
)
@click.option("--tag", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option("--host", help="Hostname to record (default: this machine's).")
@click.option("--json", "as_json", is_flag=True, help="JSON progress, event and summary lines.")
@pass_app
def backup(
    app: AppContext,
    source: str,
    parent: str | None,
    changed_extents: str | None,
    change_tracking: str,
    read_plan: str,
    parallel: int,
    strict_read_errors: bool | None,
    stall_seconds: int,
    fail_on_stall: bool,
    snapshot: str,
    chunk_size: str | None,
    tags: tuple[str, ...],
    host: str | None,
    as_json: bool,
) -> None:
    """Back up SOURCE (a block device or an image file) as one disk image snapshot."""
    # the engine and the sources are heavy: imported while the key is derived (open_repo below),
    # after the flags are checked; every other command starts faster
    from ..engines.disk_image import ImageBackupOptions, parse_size
    from ..errors import UsageError
    from ..sources.reader import resolve_strict_read_errors

    if strict_read_errors is None:  # the flag wins; unset: the environment variable, else best effort
        try:
            strict_read_errors = resolve_strict_read_errors({}, os.environ)
        except ValueError as e:
            raise UsageError(str(e)) from None
    extra = {"chunk_size": parse_size(chunk_size)} if chunk_size else {}
    opts = ImageBackupOptions(
        source=source,
        parent=parent,
        changed_extents=changed_extents,
        change_tracking=change_tracking == "auto",
        read_plan=read_plan,
        parallel=parallel,
        strict_read_errors=strict_read_errors,
        stall_seconds=float(stall_seconds),
        fail_on_stall=fail_on_stall,
        snapshot=snapshot,
        tags=tuple(t for tag in tags for t in tag.split(",") if t),
        host=host,
        memory=app.memory,
        **extra,  # type: ignore[arg-type]
    )
    out = sys.stdout if as_json else sys.stderr
    out_lock = threading.Lock()

    warnings: list[str] = []

    def on_event(e: Event) -> None:
        with out_lock:
            if as_json:
                out.write(json.dumps({"message_type": "event", **e.to_json()}) + "\n")
                out.flush()
            elif app.debug:
                click.echo(f"{e.effective_level().value}: {e.message}", err=True)
            elif e.effective_level() is not Level.INFO and e.code is not EventCode.DISK_IMAGE_FAILED:
                warnings.append(f"{e.effective_level().value}: {e.message}")

    repo = app.open_repo(preload=("numpy", "e3backup.engines.disk_image.backup"))
    from ..engines.disk_image import run_image_backup

    with Progress(mode="json" if as_json else "auto", out=out) as progress:
        result = run_image_backup(repo, opts, progress, on_event)
    # a failed backup prints its one-line error only; a finished one tells what to know about it
    for line in warnings:
        click.echo(line, err=True)
    if as_json:
        print_json(result.summary_json())
        return
    kind = "full" if result.full else f"incremental (parent {result.parent_id[:8]})"
    click.echo(
        f"Device: {result.source} ({human_bytes(result.device_size)}), {kind}\n"
        f"Read {human_bytes(result.bytes_read)} of {human_bytes(result.plan_bytes)} planned; "
        f"chunks: {result.chunks_new} new, {result.chunks_known} known, {result.chunks_reused} reused, "
        f"{result.chunks_zero} zero\n"
        + "".join(
            f"  partition {row['partition']}: {row['method']}, {human_bytes(row['bytes_planned'])} to read "
            f"({row['reason']})\n"
            for row in result.change_tracking
        )
        + f"Added to the repository: {human_bytes(result.bytes_added)} ({human_bytes(result.bytes_stored)} stored)\n"
        f"in {result.duration:.1f}s; snapshot {result.snapshot_id[:8]} saved"
    )


def _restore_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--path",
        "paths",
        multiple=True,
        help="With latest: only image snapshots of this source (the backed-up device path).",
    )(f)
    f = click.option(
        "--tag",
        "tags",
        multiple=True,
        help="With latest: only image snapshots with these tags (a,b: both; repeatable: any).",
    )(f)
    f = click.option(
        "--host", "hosts", multiple=True, help="With latest: only image snapshots of this host (repeatable)."
    )(f)
    f = click.option("--json", "as_json", is_flag=True, help="JSON progress and summary lines.")(f)
    f = click.option("--force", is_flag=True, help="Overwrite an existing file.")(f)
    f = click.option("--verify", is_flag=True, help="Re-read what was written and check it against the blob hashes.")(f)
    f = click.option(
        "--segment-size-mb",
        type=click.IntRange(1, 4096),
        default=32,
        show_default=True,
        help="Bytes of disk each worker takes at a time (policy restore_segment_size_mb).",
    )(f)
    f = click.option(
        "--workers",
        type=click.IntRange(1, 64),
        default=8,
        show_default=True,
        help="Parallel workers, each with its own reader and target handle (policy restore_parallel_workers).",
    )(f)
    return f


def _run_restore(
    app: AppContext,
    snapshot: str,
    as_json: bool,
    verb: str,
    select: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]],
    **kw: object,
) -> None:
    """``select``: the ``--host``, ``--tag`` and ``--path`` values that narrow ``latest``."""
    repo = app.open_repo(preload=("numpy", "e3backup.restore.image"))
    from ..repo.snapshot_filter import SnapshotFilter
    from ..restore.image import ImageRestoreOptions, run_image_restore

    select_latest = SnapshotFilter.from_options(*select)
    opts = ImageRestoreOptions(snapshot=snapshot, select=select_latest, memory=app.memory, **kw)  # type: ignore[arg-type]
    out = sys.stdout if as_json else sys.stderr
    with Progress(mode="json" if as_json else "auto", out=out) as progress:
        result = run_image_restore(repo, opts, progress)
    if as_json:
        print_json(result.summary_json())
        return
    where = "block device" if result.block_device else f"{result.image_format} file"
    verified = f"; verified {result.chunks_verified} chunks" if result.verified else ""
    rate = result.device_size / max(result.duration, 1e-9)
    click.echo(
        f"{verb} {result.file_name} of snapshot {result.snapshot_id[:8]} ({human_bytes(result.device_size)}) "
        f"to {where} {result.target}\n"
        f"Wrote {human_bytes(result.bytes_written)} in {result.chunks_written} chunks, "
        f"{result.chunks_zero} zero chunks{' zeroed' if result.block_device else ' left as holes'}{verified}\n"
        f"in {result.duration:.1f}s ({human_bytes(rate)}/s of disk)"
    )


@image.command("restore")
@click.argument("snapshot")
@click.option("--target", required=True, help="File (created sparse) or block device to write the disk to.")
@click.option("--format", "image_format", type=click.Choice(["raw", "vhdx"]), default="raw", show_default=True)
@click.option("--discard", is_flag=True, help="Block device: discard zero ranges instead of writing zeros.")
@_restore_options
@pass_app
def restore(
    app: AppContext,
    snapshot: str,
    target: str,
    image_format: str,
    discard: bool,
    workers: int,
    segment_size_mb: int,
    verify: bool,
    force: bool,
    as_json: bool,
    hosts: tuple[str, ...],
    tags: tuple[str, ...],
    paths: tuple[str, ...],
) -> None:
    """Restore image SNAPSHOT (an ID, a prefix or latest: the newest image snapshot) to a file or
    a block device (only the backed-up extents are written)."""
    _run_restore(
        app,
        snapshot,
        as_json,
        "Restored",
        (hosts, tags, paths),
        target=target,
        image_format=image_format,
        discard=discard,
        workers=workers,
        segment_size=segment_size_mb << 20,
        verify=verify,
        force=force,
    )


@image.command("export")
@click.argument("snapshot")
@click.argument("out")
@click.option("--format", "image_format", type=click.Choice(["vhdx", "raw"]), default="vhdx", show_default=True)
@_restore_options
@pass_app
def export(
    app: AppContext,
    snapshot: str,
    out: str,
    image_format: str,
    workers: int,
    segment_size_mb: int,
    verify: bool,
    force: bool,
    as_json: bool,
    hosts: tuple[str, ...],
    tags: tuple[str, ...],
    paths: tuple[str, ...],
) -> None:
    """Write image SNAPSHOT (an ID, a prefix or latest: the newest image snapshot) as a complete
    disk file OUT (a synthetic full: no chain to replay)."""
    if os.path.exists(out) and not os.path.isfile(out):
        raise click.UsageError(f"{out} exists and is not a regular file; export writes files only")
    _run_restore(
        app,
        snapshot,
        as_json,
        "Exported",
        (hosts, tags, paths),
        target=out,
        image_format=image_format,
        workers=workers,
        segment_size=segment_size_mb << 20,
        verify=verify,
        force=force,
    )


COMMANDS = [image]


@image.command("serve")
@click.argument("snapshot")
@click.option("--nbd", "address", required=True, help="Where to listen: unix:PATH or tcp:HOST:PORT (port 0: any).")
@click.option(
    "--writable-overlay",
    "overlay",
    type=click.Path(dir_okay=False),
    help="Copy-on-write file that takes the writes (kept; reused if it exists). Without it: read-only.",
)
@pass_app
def serve(app: AppContext, snapshot: str, address: str, overlay: str | None) -> None:
    """Serve image SNAPSHOT (an ID, a prefix or latest) as an NBD disk until Ctrl-C.

    \b
    Clients: qemu-img, qemu (-drive file=URI), nbdinfo, nbdcopy, nbdfuse.
    Writes go to the overlay file only, never to the repository.
    """
    from ..instant.address import NbdAddress

    where = NbdAddress.parse(address)  # a bad address fails before the password is asked
    repo = app.open_repo(preload=("numpy", "e3backup.instant.export"))
    from ..instant.export import open_export

    with open_export(repo, snapshot, where, overlay=overlay) as export:
        mode = f"writes to overlay {overlay}" if overlay else "read-only"
        click.echo(
            f"Serving snapshot {export.image.snapshot.short_id} ({export.image.file_name}, "
            f"{human_bytes(export.image.device_size)}, {mode}) at {export.uri}\nCtrl-C stops.",
        )
        sys.stdout.flush()
        _wait_for_signal()
    click.echo("Stopped", err=True)


@image.command("boot")
@click.argument("snapshot")
@click.option("--overlay", type=click.Path(dir_okay=False), help="Copy-on-write file for the VM's writes.")
@click.option("--keep-overlay", is_flag=True, help="Keep the overlay when the VM stops (default: discard it).")
@click.option("--accel", type=click.Choice(["auto", "kvm", "tcg"]), default="auto", show_default=True,
              help="auto: KVM when it works here, else software emulation (TCG).")  # fmt: skip
@click.option("--firmware", type=click.Choice(["auto", "bios", "uefi"]), default="auto", show_default=True,
              help="auto: UEFI (OVMF) for a GPT disk with an EFI system partition, else BIOS.")  # fmt: skip
@click.option("--memory-mb", type=click.IntRange(64, 1 << 20), default=1024, show_default=True, help="VM memory.")
@pass_app
def boot(
    app: AppContext, snapshot: str, overlay: str | None, keep_overlay: bool, accel: str, firmware: str, memory_mb: int
) -> None:
    """Boot image SNAPSHOT (an ID, a prefix or latest) in a QEMU VM until Ctrl-C or the guest
    powers off. The screen is on VNC (localhost); the serial console is printed here."""
    repo = app.open_repo(preload=("numpy", "e3backup.instant.vm"))
    from ..instant.vm import boot_snapshot

    def echo_serial(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()

    vm = boot_snapshot(
        repo,
        snapshot,
        accel=accel,
        firmware=firmware,
        memory_mb=memory_mb,
        overlay=overlay,
        keep_overlay=keep_overlay,
        vnc=True,
        on_serial=echo_serial,
    )
    with vm:
        fate = "kept" if keep_overlay else "discarded"
        click.echo(
            f"Booted snapshot {vm.export.image.snapshot.short_id} ({human_bytes(vm.export.image.device_size)}): "
            f"{vm.firmware.upper()}, {vm.accel.upper()} ({vm.accel_reason}), {memory_mb} MiB\n"
            f"Screen: VNC at {vm.vnc} (e.g. vncviewer {vm.vnc})\n"
            f"Serial console: printed below (log {vm.serial_log})\n"
            f"Overlay: {vm.overlay} ({fate} when the VM stops)\n"
            "Ctrl-C stops the VM.",
            err=True,
        )
        try:
            code = wait_in_ticks(vm.wait, lambda c: c is not None)
            click.echo(f"\nThe VM has stopped (QEMU exit code {code})", err=True)
        except (KeyboardInterrupt, E3Error):
            click.echo("\nStopping the VM", err=True)


def _wait_for_signal() -> None:
    """Block until Ctrl-C or SIGTERM (which the CLI turns into an exception)."""
    try:
        wait_in_ticks(time.sleep, lambda _: False)
    except (KeyboardInterrupt, E3Error):
        pass
