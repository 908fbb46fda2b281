"""The S3 storage options shared by every command that opens a repository.

``@s3_options`` adds ``--upload-connections``, ``--limit-upload``, ``--limit-download``,
``--insecure-tls``, ``--ca-bundle`` and ``--region`` to a click command and hands the command
one ``store_options`` dict (only the options given) ready for ``open_store(repo, **store_options)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_NAMES = ("upload_connections", "limit_upload", "limit_download", "insecure_tls", "ca_bundle",
          "region")

_OPTIONS = [
    click.option("--upload-connections", type=click.IntRange(min=1), default=None,
                 help="Parallel S3 uploads (default 5)."),
    click.option("--limit-upload", type=click.FloatRange(min=0, min_open=True), default=None,
                 metavar="KIB/S", help="Limit upload bandwidth to this many KiB/s."),
    click.option("--limit-download", type=click.FloatRange(min=0, min_open=True), default=None,
                 metavar="KIB/S", help="Limit download bandwidth to this many KiB/s."),
    click.option("--insecure-tls", is_flag=True, default=False,
                 help="Do not check the S3 endpoint's TLS certificate (self-signed test setups)."),
    click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False, readable=True),
                 default=None, help="Trust the CA certificates in this PEM file for S3."),
    click.option("--region", default=None, help="S3 region (default: from the AWS config, else "
                 "us-east-1)."),
]


def s3_options(f: F) -> F:
    """Add the S3 options to a command; it receives them as ``store_options: dict``."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name in _NAMES}
        store_options = {k: v for k, v in given.items() if v is not None and v is not False}
        return f(*args, store_options=store_options, **kwargs)

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


__all__ = ["s3_options"]
