"""Turn a repository location (``/path``, ``local:/path``, ``s3:...`` or ``rest:...``) into a store."""

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
#: Options of a ``rest:`` repository (restic's REST protocol: rest-server, the e3backup gateway).
REST_OPTIONS = frozenset({
    "upload_connections", "ca_bundle", "username", "password", "retry", "connect_timeout", "read_timeout",
})


def open_store(location: str, **options: Any) -> Store:
    """Open the store for ``location``.

    Options (``None`` means "not given"): ``limit_upload`` / ``limit_download`` (KiB/s, any
    store); for S3 ``upload_connections``, ``region``, ``ca_bundle``, ``insecure_tls``,
    ``profile``, ``access_key`` / ``secret_key`` (else the AWS environment and config files),
    ``retry`` (a ``RetryPolicy``), ``connect_timeout`` / ``read_timeout`` (seconds); for REST
    ``username`` / ``password`` (else those in the URL), ``upload_connections``, ``ca_bundle``,
    ``retry`` and the timeouts.
    """
    if not location:
        raise UsageError("no repository location given (the location is empty)")
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    unknown = set(given) - S3_OPTIONS - REST_OPTIONS - COMMON_OPTIONS
    if unknown:
        raise UsageError(f"unknown storage option(s): {', '.join(sorted(unknown))}")
    limits = (given.pop("limit_upload", None), given.pop("limit_download", None))
    store: Store
    if location.startswith("rest:"):
        from .rest import RestStore

        wrong = set(given) - REST_OPTIONS
        if wrong:
            raise UsageError(f"option(s) {', '.join(sorted(wrong))} do not apply to rest: repositories")
        if "upload_connections" in given:
            given["connections"] = given.pop("upload_connections")
        store = RestStore(location, **given)
    elif location.startswith("s3:"):
        wrong = set(given) - S3_OPTIONS
        if wrong:
            raise UsageError(f"option(s) {', '.join(sorted(wrong))} do not apply to s3: repositories")
        from .s3 import S3Store  # boto3 is only imported for S3 repositories
        from .s3_location import parse_s3_url

        store = S3Store(parse_s3_url(location), **given)
    else:
        if given:
            raise UsageError(
                f"option(s) {', '.join(sorted(given))} apply to s3: and rest: repositories only"
            )
        if location.startswith("local:"):
            location = location[len("local:") :]
        store = LocalStore(location)
    return limit(store, *limits)


__all__ = ["open_store"]
