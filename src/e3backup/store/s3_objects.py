"""Plain objects in a bucket, for writers that are not a repository (the sync engine).

The ``Store`` interface names files by repository handle; a mirror names them by any key and
needs what S3 offers beyond it: listings with ETags, user metadata, ``Content-MD5`` checked
uploads, multipart uploads and batch deletes. ``ObjectBucket`` gives exactly that on an
``S3Store``, so every request still goes through the store's retries and error mapping, and no
engine talks to boto3.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .s3 import S3Store
from .s3_location import S3Location

DELETE_BATCH = 1000  # DeleteObjects' limit
MAX_PARTS = 10_000


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the bucket's prefix
    size: int
    etag: str  # without quotes; the content's MD5 for a single-part upload


def content_md5(data: bytes) -> tuple[str, str]:
    """(base64 for the ``Content-MD5`` header, hex) of ``data``."""
    digest = hashlib.md5(data, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode(), digest.hex()


class MultipartUpload:
    """One multipart upload: parts may be sent from several threads; ``complete`` or ``abort``."""

    def __init__(self, bucket: ObjectBucket, key: str, upload_id: str) -> None:
        self._b = bucket
        self.key = key
        self.upload_id = upload_id

    def upload_part(self, number: int, data: bytes) -> dict[str, Any]:
        b64, _ = content_md5(data)
        k, loc = self._b.full_key(self.key), self._b.location
        resp = self._b.store.call(f"PUT part {number}", k, lambda: self._b.client.upload_part(
            Bucket=loc.bucket, Key=k, UploadId=self.upload_id, PartNumber=number, Body=data,
            ContentLength=len(data), ContentMD5=b64))
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def complete(self, parts: list[dict[str, Any]]) -> str:
        k, loc = self._b.full_key(self.key), self._b.location
        resp = self._b.store.call("COMPLETE MULTIPART", k, lambda: self._b.client.complete_multipart_upload(
            Bucket=loc.bucket, Key=k, UploadId=self.upload_id, MultipartUpload={"Parts": parts}))
        return str(resp.get("ETag", "")).strip('"')

    def abort(self) -> None:
        """Best effort (no retries): a bucket's lifecycle rules remove what is left."""
        try:
            self._b.client.abort_multipart_upload(Bucket=self._b.location.bucket, Key=self._b.full_key(self.key),
                                                  UploadId=self.upload_id)
        except Exception:  # the upload failed already; that error is the one to report
            pass


class ObjectBucket:
    """The objects under an ``S3Store``'s location (bucket and prefix), by relative key."""

    def __init__(self, store: S3Store, location: S3Location) -> None:
        self.store = store
        self.location = location
        self.client = store.client

    def full_key(self, key: str) -> str:
        return self.location.key(key)

    def objects(self) -> Iterator[ObjectInfo]:
        """Every object under the prefix ("folder" marker keys ending in ``/`` left out)."""
        prefix = self.location.key("") if self.location.prefix else ""
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                args["ContinuationToken"] = token
            page: dict[str, Any] = self.store.call(
                "LIST", prefix, lambda a=args: self.client.list_objects_v2(**a))  # type: ignore[misc]
            for obj in page.get("Contents", ()):
                key = obj["Key"][len(prefix):]
                if key and not key.endswith("/"):
                    yield ObjectInfo(key, int(obj["Size"]), str(obj.get("ETag", "")).strip('"'))
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            if not token:
                return

    def metadata(self, key: str) -> dict[str, str]:
        """The object's user metadata (lower-case names, ``x-amz-meta-`` stripped): one HEAD."""
        k = self.full_key(key)
        resp = self.store.call("HEAD", k, lambda: self.client.head_object(Bucket=self.location.bucket, Key=k))
        return {m.lower(): v for m, v in (resp.get("Metadata") or {}).items()}

    def put(self, key: str, data: bytes, metadata: dict[str, str]) -> tuple[str, str]:
        """One PUT checked by the server against ``Content-MD5``; returns (ETag, MD5 hex)."""
        b64, md5 = content_md5(data)
        k = self.full_key(key)
        resp = self.store.call("PUT", k, lambda: self.client.put_object(
            Bucket=self.location.bucket, Key=k, Body=data, ContentLength=len(data), ContentMD5=b64,
            ContentType="application/octet-stream", Metadata=metadata))
        return str(resp.get("ETag", "")).strip('"'), md5

    def start_multipart(self, key: str, metadata: dict[str, str]) -> MultipartUpload:
        k = self.full_key(key)
        resp = self.store.call("CREATE MULTIPART", k, lambda: self.client.create_multipart_upload(
            Bucket=self.location.bucket, Key=k, ContentType="application/octet-stream", Metadata=metadata))
        return MultipartUpload(self, key, str(resp["UploadId"]))

    def delete(self, keys: list[str]) -> list[tuple[str, str]]:
        """Delete in batches; returns (key, reason) for each object the server would not delete."""
        failed: list[tuple[str, str]] = []
        for i in range(0, len(keys), DELETE_BATCH):
            batch = keys[i: i + DELETE_BATCH]
            objects = [{"Key": self.full_key(k)} for k in batch]
            resp = self.store.call("DELETE", f"{len(batch)} objects", lambda o=objects: self.client.delete_objects(  # type: ignore[misc]
                Bucket=self.location.bucket, Delete={"Objects": o, "Quiet": True}))
            bad = {e["Key"]: f"{e.get('Code', '')}: {e.get('Message', '')}" for e in resp.get("Errors", ())}
            failed += [(k, bad[self.full_key(k)]) for k in batch if self.full_key(k) in bad]
        return failed

    def close(self) -> None:
        self.store.close()


__all__ = ["DELETE_BATCH", "MAX_PARTS", "MultipartUpload", "ObjectBucket", "ObjectInfo", "content_md5"]
