"""A repository in an S3 bucket (AWS or any S3-compatible server: SeaweedFS, MinIO, Ceph, Wasabi).

Object keys are the repository's relative paths under an optional prefix (spec 1.2); PUT is
atomic, so no temporary names. One boto3 client is shared by every thread (botocore clients are
thread-safe); its connection pool is sized for ``upload_connections`` parallel uploads plus
concurrent reads. botocore's own retries are off: ``call_with_retry`` retries each whole
operation, body read included, bounded in count and by the time since the storage stopped answering
(one clock for all operations), and foreign errors are mapped to
``StoreError`` by ``s3_errors``. Why boto3 and these settings: ``docs/storage-s3.md``.
"""

from __future__ import annotations

import builtins
import functools
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, BinaryIO, TypeVar

import boto3
import botocore.session
import urllib3
from botocore import exceptions as bce
from botocore.config import Config
from botocore.utils import parse_timestamp

from ..errors import NotFoundError, StoreUnavailableError, UsageError
from .base import FileType, Handle, is_id
from .remote import EMPTY, byte_range, list_config
from .retry import Outage, RetryPolicy, call_with_retry, retry_note
from .s3_errors import FOREIGN_ERRORS, client_error_parts, is_retryable, map_error
from .s3_location import S3Location
from .temporaries import Temporary

T = TypeVar("T")

log = logging.getLogger("e3backup.store.s3")

DEFAULT_UPLOAD_CONNECTIONS = 5  # restic's s3.connections default
DEFAULT_REGION = "us-east-1"


def fast_timestamp(value: str) -> datetime:
    """S3's ISO 8601 times by the standard library, else botocore's parser: botocore parses every
    listed object's LastModified with dateutil, 0.3 ms each (3 s of a 10,000-object listing)."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return parse_timestamp(value)  # type: ignore[no-any-return]


class S3Store:
    """``Store`` on an S3 bucket; safe to share between threads."""

    def __init__(
        self,
        location: S3Location,
        *,
        upload_connections: int = DEFAULT_UPLOAD_CONNECTIONS,
        region: str | None = None,
        profile: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        ca_bundle: str | None = None,
        insecure_tls: bool = False,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        if upload_connections < 1:
            raise UsageError(f"upload_connections must be at least 1, not {upload_connections}")
        if ca_bundle and insecure_tls:
            raise UsageError("a CA bundle (ca_bundle) and insecure TLS (insecure_tls) exclude each other")
        if ca_bundle and not os.path.isfile(ca_bundle):
            raise UsageError(f"CA bundle {ca_bundle!r} is not a readable file")
        if (access_key is None) != (secret_key is None):
            raise UsageError("give both the S3 access key and the secret key, or neither")
        self._loc = location
        self._retry = retry or RetryPolicy()
        self._outage = Outage()  # one outage clock for every operation (store/retry.py)
        self.upload_connections = upload_connections
        # uploaders, plus readers (restore, check) and listing running at the same time
        self.pool_size = max(10, 2 * upload_connections)
        self.page_size = 1000  # keys per LIST request (S3's maximum)
        core = botocore.session.get_session()
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=fast_timestamp)
        try:
            session = boto3.session.Session(
                profile_name=profile, aws_access_key_id=access_key,
                aws_secret_access_key=secret_key, botocore_session=core,
            )
        except bce.ProfileNotFound as e:
            raise UsageError(f"S3 profile {profile!r} not found in the AWS config files") from e
        self.region = region or session.region_name or DEFAULT_REGION
        verify: bool | str = True
        if insecure_tls:
            verify = False
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
            log.warning("TLS certificate checks are off for %s (--insecure-tls)", location.endpoint)
        elif ca_bundle:
            verify = ca_bundle
        host = location.endpoint.split("://", 1)[1]
        config = Config(
            region_name=self.region,
            signature_version="s3v4",
            # S3-compatible servers want path-style; AWS prefers virtual-hosted buckets.
            s3={"addressing_style": "virtual" if host.endswith(".amazonaws.com") else "path"},
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=self.pool_size,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            tcp_keepalive=True,
            # the new default CRC checksums cost CPU and many S3-compatible servers reject them
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = session.client(
            "s3", endpoint_url=location.endpoint, config=config, verify=verify,
        )

    @property
    def location(self) -> str:
        return str(self._loc)

    def __repr__(self) -> str:
        return f"S3Store({self.location!r})"

    @property
    def client(self) -> Any:
        """The boto3 client, for S3 operations beyond the ``Store`` interface (``s3_objects``)."""
        return self._client

    @property
    def bucket(self) -> str:
        return self._loc.bucket

    def object_key(self, h: Handle) -> str:
        """The object key of ``h`` (the prefix included), for calls on ``client``."""
        return self._key(h)

    def call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` (a call on ``client`` about ``key``) with this store's retries and error mapping."""
        return self._call(op, key, fn)

    # -- plumbing ----------------------------------------------------------------------------

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        what = f"{op} {self._loc.bucket}/{key}"
        try:
            return call_with_retry(fn, self._retry, retryable=is_retryable, what=what,
                                   outage=self._outage)
        except FOREIGN_ERRORS as e:
            err = map_error(e, what=what, endpoint=self._loc.endpoint, bucket=self._loc.bucket)
            note = retry_note(e)
            if note:
                err = type(err)(f"{err}; {note}")
            raise err from e

    def _key(self, h: Handle) -> str:
        return self._loc.key(h.path())

    # -- the Store interface -----------------------------------------------------------------

    def create(self) -> None:
        """Create the bucket when missing; fine if it exists and is ours."""
        bucket = self._loc.bucket

        def ensure() -> None:
            try:
                self._client.head_bucket(Bucket=bucket)
                return
            except bce.ClientError as e:
                code, status, _ = client_error_parts(e)
                if status != 404 and code not in ("NoSuchBucket", "NotFound", "404"):
                    raise
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if self.region != DEFAULT_REGION:
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                self._client.create_bucket(**kwargs)
                log.info("created bucket %s at %s", bucket, self._loc.endpoint)
            except bce.ClientError as e:
                code, status, _ = client_error_parts(e)
                if code == "BucketAlreadyOwnedByYou":
                    return
                if code == "BucketAlreadyExists":
                    raise StoreUnavailableError(
                        f"bucket {bucket!r} at {self._loc.endpoint} belongs to another account; "
                        "choose another bucket name"
                    ) from e
                if code == "AccessDenied" or status == 403:
                    raise StoreUnavailableError(
                        f"bucket {bucket!r} does not exist at {self._loc.endpoint} and these "
                        "credentials may not create it (AccessDenied); create the bucket or grant "
                        "s3:CreateBucket"
                    ) from e
                raise

        self._call("CREATE BUCKET", "", ensure)

    def save(self, h: Handle, data: bytes | memoryview) -> None:
        body = data if isinstance(data, bytes) else bytes(data)
        key = self._key(h)
        self._call("PUT", key, lambda: self._client.put_object(
            Bucket=self._loc.bucket, Key=key, Body=body, ContentLength=len(body),
            ContentType="application/octet-stream",
        ))

    def save_file(self, h: Handle, f: BinaryIO, size: int) -> None:
        key = self._key(h)

        def put() -> Any:
            f.seek(0)  # every attempt sends the file from its start
            return self._client.put_object(
                Bucket=self._loc.bucket, Key=key, Body=f, ContentLength=size,
                ContentType="application/octet-stream",
            )

        self._call("PUT", key, put)

    def load(self, h: Handle, offset: int = 0, length: int | None = None) -> bytes:
        span = byte_range(h, offset, length)
        if span == EMPTY:
            self.stat(h)
            return b""
        key = self._key(h)
        kwargs: dict[str, Any] = {"Bucket": self._loc.bucket, "Key": key}
        if span:
            kwargs["Range"] = span

        def get() -> bytes:
            try:
                resp = self._client.get_object(**kwargs)
            except bce.ClientError as e:
                code, status, _ = client_error_parts(e)
                if code == "InvalidRange" or status == 416:
                    return b""  # offset at or past the end: nothing there, as for a file
                raise
            body = resp["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
            return data

        return self._call("GET", key, get)

    def load_view(self, h: Handle, offset: int, length: int) -> bytes:
        return self.load(h, offset, length)

    def stat(self, h: Handle) -> int:
        key = self._key(h)
        resp = self._call("HEAD", key, lambda: self._client.head_object(Bucket=self._loc.bucket, Key=key))
        return int(resp["ContentLength"])

    def list(self, t: FileType) -> Iterator[tuple[str, int]]:
        if t is FileType.CONFIG:
            yield from list_config(self)
            return
        prefix = self._loc.key(t.value + "/")
        kwargs: dict[str, Any] = {"Bucket": self._loc.bucket, "Prefix": prefix,
                                  "MaxKeys": self.page_size}
        if t is not FileType.PACK:
            kwargs["Delimiter"] = "/"  # restic lists only data/ recursively
        token: str | None = None
        while True:
            page_args = dict(kwargs, ContinuationToken=token) if token else kwargs
            page: dict[str, Any] = self._call("LIST", prefix, functools.partial(
                self._client.list_objects_v2, **page_args))
            for obj in page.get("Contents", ()):
                name = obj["Key"].rsplit("/", 1)[-1]
                if is_id(name):
                    yield name, int(obj["Size"])
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise StoreUnavailableError(
                    f"LIST {self._loc.bucket}/{prefix}: truncated listing without a continuation token"
                )

    def temporaries(self) -> builtins.list[Temporary]:
        """Unfinished multipart uploads under the repository's prefix (their owner is unknown:
        only a command holding the exclusive lock aborts them, see ``repo.leftovers``)."""
        prefix = self._loc.key("")
        found: builtins.list[Temporary] = []
        kwargs: dict[str, Any] = {"Bucket": self._loc.bucket, "Prefix": prefix}
        while True:
            page: dict[str, Any] = self._call("LIST UPLOADS", prefix, functools.partial(
                self._client.list_multipart_uploads, **kwargs))
            found += [Temporary(u["Key"], 0, None, None, u["UploadId"]) for u in page.get("Uploads", ())]
            if not page.get("IsTruncated"):
                return found
            kwargs.update(KeyMarker=page.get("NextKeyMarker"), UploadIdMarker=page.get("NextUploadIdMarker"))

    owners_known = False  # an upload names no process: see ``temporaries``

    def remove_temporary(self, t: Temporary) -> None:
        try:
            self._call("ABORT UPLOAD", t.path, lambda: self._client.abort_multipart_upload(
                Bucket=self._loc.bucket, Key=t.path, UploadId=t.upload_id))
        except NotFoundError:
            pass

    def remove(self, h: Handle) -> None:
        self.stat(h)  # S3 DELETE of a missing key succeeds; the contract wants NotFoundError
        key = self._key(h)
        self._call("DELETE", key, lambda: self._client.delete_object(Bucket=self._loc.bucket, Key=key))

    def close(self) -> None:
        self._client.close()


__all__ = ["DEFAULT_UPLOAD_CONNECTIONS", "S3Store"]
