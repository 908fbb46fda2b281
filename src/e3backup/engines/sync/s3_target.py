"""A bucket (and key prefix) as the sync destination, on the project's S3 store.

Objects carry the source file's modification time in the ``mtime`` user metadata, in rclone's
format (seconds with a fraction), so rclone and e3backup read each other's mirrors. Files up to
``PART_SIZE`` go in one PUT with ``Content-MD5`` (the server checks the bytes; the ETag is
then the MD5); larger ones in parts uploaded in parallel, each with its ``Content-MD5``, and an
interrupted upload is aborted. Every request goes through the store's retries and error mapping.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ...errors import Cancelled
from ...store.s3 import S3Store
from ...store.s3_location import S3Location
from .options import S3Target
from .source import SourceFile
from .state import SyncState, Uploaded
from .target import DestFile, FileError, Pace, chunks

PART_SIZE = 16 << 20
MAX_PARTS = 10_000
DELETE_BATCH = 1000  # DeleteObjects' limit


def format_mtime(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def parse_mtime(text: str) -> int | None:
    """rclone's ``mtime`` metadata ("1701600000.123456789") as integer nanoseconds."""
    sec, _, frac = text.strip().partition(".")
    if not sec.lstrip("-").isdigit() or (frac and not frac.isdigit()):
        return None
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def _b64md5(data: bytes) -> tuple[str, bytes]:
    digest = hashlib.md5(data, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode(), digest


class S3Destination:
    def __init__(self, target: S3Target, state: SyncState, transfers: int, **store_options: Any) -> None:
        self.loc = S3Location(target.endpoint, target.bucket, target.prefix.strip("/"))
        self.store = S3Store(self.loc, upload_connections=transfers, region=target.region or None,
                             access_key=target.access_key, secret_key=target.secret_key,
                             ca_bundle=target.ca_bundle, insecure_tls=target.insecure_tls, **store_options)
        self.client = self.store.client
        self.state = state
        self._lock = threading.Lock()
        self._heads: dict[str, dict[str, str]] = {}
        self._parts = ThreadPoolExecutor(transfers, thread_name_prefix="sync-part")
        self._part_slots = threading.BoundedSemaphore(transfers)  # part buffers in memory: transfers x 16 MiB

    @property
    def url(self) -> str:
        return str(self.loc)

    def _key(self, key: str) -> str:
        return self.loc.key(key)

    # -- listing and judging ----------------------------------------------------------------------

    def listing(self) -> dict[str, DestFile]:
        prefix = self.loc.key("") if self.loc.prefix else ""
        out: dict[str, DestFile] = {}
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.loc.bucket, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                args["ContinuationToken"] = token
            page: dict[str, Any] = self.store.call(
                "LIST", prefix, lambda a=args: self.client.list_objects_v2(**a))  # type: ignore[misc]
            for obj in page.get("Contents", ()):
                key = obj["Key"][len(prefix):]
                if key and not key.endswith("/"):  # "folder" marker objects of some tools
                    out[key] = DestFile(int(obj["Size"]), obj.get("ETag", "").strip('"'))
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            if not token:
                break
        with self._lock:  # forget what is no longer there
            self.state.entries = {k: v for k, v in self.state.entries.items() if k in out}
        return out

    def _known(self, key: str, dest: DestFile) -> Uploaded | None:
        with self._lock:
            u = self.state.entries.get(key)
        return u if u is not None and u.size == dest.size and u.etag == dest.etag else None

    def _head(self, key: str) -> dict[str, str]:
        with self._lock:
            if key in self._heads:
                return self._heads[key]
        k = self._key(key)
        resp = self.store.call("HEAD", k, lambda: self.client.head_object(Bucket=self.loc.bucket, Key=k))
        meta = {m.lower(): v for m, v in (resp.get("Metadata") or {}).items()}
        with self._lock:
            self._heads[key] = meta
        return meta

    def mtime_ns(self, key: str, dest: DestFile) -> int | None:
        known = self._known(key, dest)
        if known is not None:
            return known.mtime_ns
        text = self._head(key).get("mtime")
        return parse_mtime(text) if text else None

    def md5(self, key: str, dest: DestFile) -> str | None:
        if dest.etag and "-" not in dest.etag and len(dest.etag) == 32:
            return dest.etag.lower()  # a single-part upload: the ETag is the content's MD5
        known = self._known(key, dest)
        if known is not None and known.md5:
            return known.md5
        text = self._head(key).get("md5chksum")  # rclone's metadata for multipart uploads
        try:
            return base64.b64decode(text).hex() if text else None
        except ValueError:
            return None

    def remember(self, key: str, src: SourceFile, dest: DestFile) -> None:
        """An unchanged file judged by HEAD: cache it, so the next run needs no HEAD."""
        if dest.etag:
            with self._lock:
                old = self.state.entries.get(key)
                md5 = old.md5 if old and old.etag == dest.etag else ""
                self.state.entries[key] = Uploaded(src.size, src.mtime_ns, dest.etag, md5)

    # -- changes ------------------------------------------------------------------------------------

    def upload(self, key: str, src: SourceFile, pace: Pace, cancel: threading.Event) -> None:
        if "\\" in key:
            # SeaweedFS (and some gateways) store "a\b" as "a/b": the next listing would not find
            # the object and delete what it found instead. Refused, so no server can get it wrong.
            raise FileError(src.path, "a backslash in a name cannot be kept in an S3 key on every server")
        meta = {"mtime": format_mtime(src.mtime_ns)}
        if src.size <= PART_SIZE:
            data = b"".join(chunks(src, PART_SIZE, cancel))
            b64, digest = _b64md5(data)
            pace(len(data))
            k = self._key(key)
            resp = self.store.call("PUT", k, lambda: self.client.put_object(
                Bucket=self.loc.bucket, Key=k, Body=data, ContentLength=len(data), ContentMD5=b64,
                ContentType="application/octet-stream", Metadata=meta))
            etag, md5 = str(resp.get("ETag", "")).strip('"'), digest.hex()
        else:
            etag, md5 = self._multipart(key, src, meta, pace, cancel)
        with self._lock:
            self.state.entries[key] = Uploaded(src.size, src.mtime_ns, etag, md5)

    def _multipart(self, key: str, src: SourceFile, meta: dict[str, str], pace: Pace,
                   cancel: threading.Event) -> tuple[str, str]:
        k, bucket = self._key(key), self.loc.bucket
        part_size = max(PART_SIZE, -(-src.size // MAX_PARTS))
        upload_id = self.store.call("CREATE MULTIPART", k, lambda: self.client.create_multipart_upload(
            Bucket=bucket, Key=k, ContentType="application/octet-stream", Metadata=meta))["UploadId"]
        whole = hashlib.md5(usedforsecurity=False)
        futures: list[Future[dict[str, Any]]] = []

        def send(number: int, data: bytes, b64: str) -> dict[str, Any]:
            try:
                if cancel.is_set():
                    raise Cancelled("sync cancelled")
                pace(len(data))
                resp = self.store.call(f"PUT part {number}", k, lambda: self.client.upload_part(
                    Bucket=bucket, Key=k, UploadId=upload_id, PartNumber=number, Body=data,
                    ContentLength=len(data), ContentMD5=b64))
                return {"PartNumber": number, "ETag": resp["ETag"]}
            finally:
                self._part_slots.release()

        try:
            for number, data in enumerate(chunks(src, part_size, cancel), start=1):
                whole.update(data)
                b64, _ = _b64md5(data)
                self._part_slots.acquire()
                futures.append(self._parts.submit(send, number, data, b64))
                done = [f for f in futures if f.done() and f.exception() is not None]
                if done:
                    done[0].result()  # the first failed part stops reading the file
            parts = [f.result() for f in futures]
            if cancel.is_set():
                raise Cancelled("sync cancelled")
            resp = self.store.call("COMPLETE MULTIPART", k, lambda: self.client.complete_multipart_upload(
                Bucket=bucket, Key=k, UploadId=upload_id, MultipartUpload={"Parts": parts}))
        except BaseException:
            for f in futures:
                f.cancel()
            for f in futures:
                if not f.cancelled():
                    f.exception()  # wait: no part may land after the abort
            try:
                self.client.abort_multipart_upload(Bucket=bucket, Key=k, UploadId=upload_id)
            except Exception:  # best effort: the bucket's lifecycle rules clean up the rest
                pass
            raise
        return str(resp.get("ETag", "")).strip('"'), whole.hexdigest()

    def delete(self, keys: list[str]) -> list[tuple[str, str]]:
        failed: list[tuple[str, str]] = []
        for i in range(0, len(keys), DELETE_BATCH):
            batch = keys[i: i + DELETE_BATCH]
            objects = [{"Key": self._key(k)} for k in batch]
            resp = self.store.call("DELETE", f"{len(batch)} objects", lambda o=objects: self.client.delete_objects(  # type: ignore[misc]
                Bucket=self.loc.bucket, Delete={"Objects": o, "Quiet": True}))
            bad = {e["Key"]: f"{e.get('Code', '')}: {e.get('Message', '')}" for e in resp.get("Errors", ())}
            for k in batch:
                reason = bad.get(self._key(k))
                if reason is not None:
                    failed.append((k, reason))
            with self._lock:
                for k in batch:
                    if self._key(k) not in bad:
                        self.state.entries.pop(k, None)
        return failed

    def close(self) -> None:
        self._parts.shutdown(wait=True, cancel_futures=True)
        self.store.close()


__all__ = ["PART_SIZE", "S3Destination", "format_mtime", "parse_mtime"]
