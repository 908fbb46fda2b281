"""``e3backup version``: version, build, platform, repository format, optional extension."""

from __future__ import annotations

import click

from ..buildinfo import info
from .output import print_json

_LABELS = {
    "version": "version",
    "build": "build",
    "commit": "commit",
    "built_at": "built at",
    "install": "installed as",
    "platform": "platform",
    "os": "os",
    "python": "python",
    "repository_format": "repository format",
    "sha256_extension": "sha256 extension",
}


@click.command("version")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def version(as_json: bool) -> None:
    """Show what this e3backup is and where it runs."""
    doc = info()
    if as_json:
        print_json(doc)
        return
    for key, label in _LABELS.items():
        if doc[key]:
            click.echo(f"{label + ':':<19}{doc[key]}")


__all__ = ["version"]
