"""Where an S3 repository lives: ``s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`` (restic's form).

As in restic, ``s3:HOST/BUCKET`` without a scheme means HTTPS. Credentials never go in the URL
(they would end up in logs, job lists and shell history); they come from the environment, a
profile, or the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import UsageError

_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")


@dataclass(frozen=True)
class S3Location:
    """An endpoint, a bucket and an optional key prefix (no leading or trailing slash)."""

    endpoint: str
    bucket: str
    prefix: str = ""

    def key(self, rel: str) -> str:
        """The object key of a repository-relative path (``path.Join`` of restic)."""
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def __str__(self) -> str:
        tail = f"/{self.prefix}" if self.prefix else ""
        return f"s3:{self.endpoint}/{self.bucket}{tail}"


def parse_s3_url(url: str) -> S3Location:
    """Parse ``s3:...``; raise ``UsageError`` naming what is wrong with it."""
    if not url.startswith("s3:"):
        raise UsageError(f"not an S3 repository URL (must start with s3:): {url!r}")
    rest = url[3:]
    if rest.startswith("//"):
        # the AWS CLI's s3://BUCKET/PREFIX names no endpoint, and reading it as s3:https://...
        # would take the bucket for a host; say what to write instead (docs/storage-s3.md)
        path = rest[2:].strip("/") if "@" not in rest else "BUCKET/PREFIX"
        raise UsageError(
            f"{'s3://' + path!r} is the AWS CLI's form, which names no endpoint: write "
            f"s3:https://HOST[:PORT]/{path} (on AWS: s3:https://s3.REGION.amazonaws.com/{path})"
        )
    if "://" not in rest:
        rest = "https://" + rest
    try:
        parts = urlsplit(rest)
        if "@" in parts.netloc:  # checked first: no message may echo a URL with a secret
            raise UsageError(
                "invalid S3 URL: credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY instead"
            )
        port = parts.port
    except ValueError as e:
        raise UsageError(f"invalid S3 URL {url!r}: {e}") from e
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"invalid S3 URL {url!r}: scheme must be http or https")
    if not parts.hostname:
        raise UsageError(f"invalid S3 URL {url!r}: no host")
    if parts.query or parts.fragment:
        raise UsageError(f"invalid S3 URL {url!r}: no query or fragment allowed")
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        raise UsageError(f"invalid S3 URL {url!r}: no bucket (expected s3:{parts.scheme}://HOST/BUCKET)")
    bucket = segments[0]
    if not _BUCKET_RE.match(bucket):
        raise UsageError(f"invalid S3 URL {url!r}: {bucket!r} is not a valid bucket name")
    if any(s in (".", "..") for s in segments[1:]):
        raise UsageError(f"invalid S3 URL {url!r}: '.' and '..' are not allowed in the prefix")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return S3Location(f"{parts.scheme}://{netloc}", bucket, "/".join(segments[1:]))


__all__ = ["S3Location", "parse_s3_url"]
