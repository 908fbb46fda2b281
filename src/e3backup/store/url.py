"""Turn a repository location (``/path``, ``local:/path`` or ``s3:...``) into a store."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from .base import Store
from .limiter import limit
from .local import LocalStore

#: Options ``open_store`` understands; S3-only ones are refused for a local repository.
S3_OPTIONS = frozenset({
    "upload_connections", "region", "ca_bundle", "insecure_tls", "profile",
    "access_key", "secret_key", "retry", "connect_timeout", "read_timeout",
})
COMMON_OPTIONS = frozenset({"limit_upload", "limit_download"})


def open_store(location: str, **options: Any) -> Store:
    """Open the store for ``location``.

    Options (``None`` means "not given"): ``limit_upload`` / ``limit_download`` (KiB/s, any
    store); for S3 ``upload_connections``, ``region``, ``ca_bundle``, ``insecure_tls``,
    ``profile``, ``access_key`` / ``secret_key`` (else the AWS environment and config files),
    ``retry`` (a ``RetryPolicy``), ``connect_timeout`` / ``read_timeout`` (seconds).
    """
    if not location:
        raise UsageError("no repository location given (the location is empty)")
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    unknown = set(given) - S3_OPTIONS - COMMON_OPTIONS
    if unknown:
        raise UsageError(f"unknown storage option(s): {', '.join(sorted(unknown))}")
    limits = (given.pop("limit_upload", None), given.pop("limit_download", None))
    store: Store
    if location.startswith("s3:"):
        from .s3 import S3Store  # boto3 is only imported for S3 repositories
        from .s3_location import parse_s3_url

        store = S3Store(parse_s3_url(location), **given)
    else:
        if given:
            raise UsageError(
                f"option(s) {', '.join(sorted(given))} apply to s3: repositories only"
            )
        if location.startswith("local:"):
            location = location[len("local:") :]
        store = LocalStore(location)
    return limit(store, *limits)


__all__ = ["open_store"]
