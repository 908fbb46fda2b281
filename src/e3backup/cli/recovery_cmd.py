"""``e3backup recovery``: the bare-metal recovery console on the rescue machine.

    e3backup recovery --server URL                        the web UI on 127.0.0.1 (open it in a browser)
    e3backup recovery --server URL --code C --target /dev/sdX [--yes]      scripted, no browser

The code comes from the dashboard ("Recover this machine"); everything else (the restore point,
the repository and its credentials) comes from the server through the session it opens. Without
``--yes`` the scripted mode asks to type the disk's name. ``--retry-max-time`` (a global option)
bounds each S3 request's own retries; a longer repository outage is ridden out by the console,
which resumes the segments not yet written.
"""

from __future__ import annotations

import threading
from typing import Any

import click

from ..errors import E3Error, UsageError
from .context import AppContext
from .ticks import wait_in_ticks


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


@click.command()
@click.option("--server", required=True, envvar="E3BACKUP_SERVER", help="The control-plane server's URL.")
@click.option("--code", help="The one-time recovery code from the dashboard (scripted mode).")
@click.option("--target", help="Scripted mode: the disk to restore to (e.g. /dev/sda).")
@click.option("--yes", is_flag=True, help="Scripted mode: do not ask to type the disk's name.")
@click.option(
    "--listen",
    default="127.0.0.1:8740",
    show_default=True,
    help="Web UI address (loopback only; port 0 picks a free one).",
)
@click.option("--workers", type=click.IntRange(1, 64), help="Overrides the job's restore_parallel_workers.")
@click.option("--segment-size-mb", type=click.IntRange(1, 1024), help="Overrides the job's restore_segment_size_mb.")
@click.pass_obj
def recovery(
    obj: AppContext,
    server: str,
    code: str | None,
    target: str | None,
    yes: bool,
    listen: str,
    workers: int | None,
    segment_size_mb: int | None,
) -> int:
    """Restore a disk image snapshot onto this machine's disk (bare-metal recovery)."""
    from ..agent.transport import HttpxTransport
    from ..recovery.client import RecoveryClient
    from ..recovery.console import ConsoleSettings, RecoveryConsole
    from ..store.retry import RetryPolicy

    retry = RetryPolicy(max_attempts=10_000, max_time=obj.retry_max_time) if obj.retry_max_time is not None else None
    settings = ConsoleSettings(workers=workers, segment_size_mb=segment_size_mb, store_retry=retry)
    transport = HttpxTransport.network(server.rstrip("/"))
    console = RecoveryConsole(RecoveryClient(transport), settings)
    reason = ""
    try:
        if code is None:
            if target is not None or yes:
                raise UsageError("--target and --yes belong to the scripted mode: give --code too")
            from ..recovery.web import serve

            serve(console, listen)
            return 0
        if target is None:
            raise UsageError("the scripted mode needs --target (the disk to restore to)")
        return _scripted(console, code, target, yes)
    except E3Error as e:
        reason = str(e)
        raise
    finally:
        console.close(reason)
        transport.close()


def _scripted(console: Any, code: str, target: str, yes: bool) -> int:
    from ..recovery.console import Phase
    from ..recovery.disks import disk_info

    img = console.sign_in(code)
    p = img.point
    click.echo(f"Signed in: recovery run #{p.run_id} (the dashboard follows it)")
    click.echo(f"Restore point: {p.hostname}, snapshot {p.snapshot_id[:8]} of {img.time:%Y-%m-%d %H:%M} UTC")
    click.echo(f"  disk {img.source}: {_size(img.device_size)}, {img.layout.table.upper()}")
    for part in img.layout.partitions:
        click.echo(f"  partition {part.index}: {part.filesystem or part.type_name} {part.name} {_size(part.size)}")
    disk = disk_info(target)
    fit = console.fit(disk)
    click.echo(f"Target: {disk.path} ({disk.model}, {_size(disk.size)})")
    if not fit.ok:
        raise UsageError(fit.reason)
    if fit.warning:
        click.echo(f"WARNING: {fit.warning}", err=True)
    confirm = disk.name
    if not yes:
        confirm = click.prompt(f"Type {disk.name} to overwrite {disk.path}", default="", show_default=False)
    console.start(disk.path, confirm)
    last = [-1.0]
    done = threading.Event()

    def report() -> None:
        while not done.wait(2.0):
            st = console.status()
            if st.percent - last[0] >= 5 or st.message.startswith("The repository"):
                last[0] = st.percent
                eta = f", {st.eta} s left" if st.eta is not None else ""
                click.echo(f"  {st.percent:5.1f} %  {_size(st.speed)}/s{eta}  {st.message}", err=True)

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    phase = _wait_or_cancel(console)
    done.set()
    st = console.status()
    for e in st.events:
        click.echo(f"  {e['time']} {e['code']} {e['message']}", err=True)
    if st.pending_delivery:
        click.echo(f"Waiting for the server to take {st.pending_delivery} pending report(s)...", err=True)
    console.wait_delivered()
    click.echo(st.message)
    if phase is Phase.DONE:
        return 0
    if phase is Phase.CANCELLED:
        return 130
    raise E3Error(st.message)


__all__ = ["recovery"]


def _wait_or_cancel(console: Any) -> Any:
    """The restore's final phase. Ctrl-C or SIGTERM cancels it as the dashboard's cancel does: the
    workers stop, the run is reported cancelled (exit 130), never left running on the dashboard."""
    from ..recovery.console import Phase

    cancelled = False
    while True:
        try:
            return wait_in_ticks(console.wait, lambda phase: phase is not Phase.RESTORING)
        except (KeyboardInterrupt, E3Error):
            if not cancelled:
                cancelled = True
                click.echo("\nCancelling the restore: the disk is left incomplete", err=True)
                console.cancel()
