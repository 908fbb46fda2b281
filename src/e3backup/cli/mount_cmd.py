"""``e3backup mount MOUNTPOINT``: browse snapshots read-only through FUSE."""

from __future__ import annotations

import click

from .context import AppContext

pass_app = click.make_pass_decorator(AppContext)


@click.command("mount")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--allow-other", is_flag=True, help="Let other users see the mount (FUSE allow_other).")
@click.option("--cache-mb", type=click.IntRange(16, 65536), default=256, show_default=True, help="Blob cache size.")
@pass_app
def mount(app: AppContext, mountpoint: str, allow_other: bool, cache_mb: int) -> None:
    """Mount the repository read-only at MOUNTPOINT (foreground; Ctrl-C unmounts).

    \b
    /ids/<id>/, /snapshots/<time>/, /hosts/<host>/<time>/, /tags/<tag>/<time>/ (+ latest).
    A file snapshot shows its tree; an image snapshot shows <name>.img, layout.json and
    partitions/<n>-<name>.img (loop-mount a partition file for file-level restore).
    """
    from ..mount import run_mount

    repo = app.open_repo()

    def ready() -> None:
        click.echo(f"Now serving the repository at {mountpoint}; Ctrl-C to unmount", err=True)

    run_mount(repo, mountpoint, allow_other=allow_other, cache_bytes=cache_mb << 20, on_ready=ready)
    click.echo("Unmounted", err=True)
