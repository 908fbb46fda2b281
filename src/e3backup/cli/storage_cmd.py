"""``e3backup storage ...``: storage diagnostics (registered with ``cli.add_command(storage)``)."""

from __future__ import annotations

import json

import click

from ..errors import UsageError
from ..storage.probe import DEFAULT_TIMEOUT, probe


@click.group()
def storage() -> None:
    """Check the storage a repository lives on."""


@storage.command("probe")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT,
              show_default=True, help="Seconds allowed for each stage (DNS, TCP, TLS, HTTP).")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False, readable=True),
              default=None, help="Trust the CA certificates in this PEM file.")
@click.option("--insecure-tls", is_flag=True, default=False,
              help="Do not check the TLS certificate.")
@click.pass_context
def probe_cmd(ctx: click.Context, url: str, as_json: bool, timeout: float,
              ca_bundle: str | None, insecure_tls: bool) -> None:
    """Check that URL (s3:https://host/bucket, https://host or host:port) is reachable.

    Checks DNS, TCP, TLS and HTTP in order and prints one line: the STORAGE_* code and what
    was found. Exit status 0 when the endpoint answered, 1 otherwise. No credentials are sent.
    """
    try:
        result = probe(url, timeout, ca_bundle=ca_bundle, insecure_tls=insecure_tls)
    except UsageError as e:
        raise click.UsageError(str(e)) from e
    if as_json:
        click.echo(json.dumps(result.to_json(), sort_keys=True))
    else:
        click.echo(f"{result.code.value}: {result.message}")
    ctx.exit(0 if result.ok else 1)


__all__ = ["storage"]
