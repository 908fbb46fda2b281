"""A bucket (and key prefix) as the sync destination, on the store's ``ObjectBucket``.

Objects carry the source file's modification time in the ``mtime`` user metadata, in rclone's
format (seconds with a fraction), so rclone and e3backup read each other's mirrors. Files up to
``PART_SIZE`` go in one PUT (the server checks its ``Content-MD5``; the ETag is then the MD5);
larger ones in parts uploaded in parallel, and an interrupted upload is aborted. What this
machine uploaded is remembered in the ``SyncState``, so an unchanged file costs no HEAD.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ...errors import Cancelled
from ...store.retry import RetryPolicy
from ...store.s3 import S3Store
from ...store.s3_location import S3Location
from ...store.s3_objects import MAX_PARTS, ObjectBucket
from .options import S3Target
from .source import SourceFile
from .state import SyncState, Uploaded
from .target import DestFile, FileError, Pace, chunks

PART_SIZE = 16 << 20


def format_mtime(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def parse_mtime(text: str) -> int | None:
    """rclone's ``mtime`` metadata ("1701600000.123456789") as integer nanoseconds."""
    sec, _, frac = text.strip().partition(".")
    if not sec.lstrip("-").isdigit() or (frac and not frac.isdigit()):
        return None
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


class S3Destination:
    def __init__(self, target: S3Target, state: SyncState, transfers: int, retry: RetryPolicy | None = None) -> None:
        loc = S3Location(target.endpoint, target.bucket, target.prefix.strip("/"))
        store = S3Store(loc, upload_connections=transfers, region=target.region or None,
                        access_key=target.access_key, secret_key=target.secret_key,
                        ca_bundle=target.ca_bundle, insecure_tls=target.insecure_tls, retry=retry)
        self.bucket = ObjectBucket(store, loc)
        self.state = state
        self._lock = threading.Lock()
        self._heads: dict[str, dict[str, str]] = {}
        self._parts = ThreadPoolExecutor(transfers, thread_name_prefix="sync-part")
        self._part_slots = threading.BoundedSemaphore(transfers)  # part buffers in memory: transfers x 16 MiB

    @property
    def url(self) -> str:
        return str(self.bucket.location)

    # -- listing and judging ----------------------------------------------------------------------

    def listing(self) -> dict[str, DestFile]:
        out = {o.key: DestFile(o.size, o.etag) for o in self.bucket.objects()}
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
        meta = self.bucket.metadata(key)
        with self._lock:
            self._heads[key] = meta
        return meta

    def known_mtime(self, key: str, dest: DestFile) -> int | None:
        known = self._known(key, dest)
        return known.mtime_ns if known is not None else None

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
            pace(len(data))
            etag, md5 = self.bucket.put(key, data, meta)
        else:
            etag, md5 = self._multipart(key, src, meta, pace, cancel)
        with self._lock:
            self.state.entries[key] = Uploaded(src.size, src.mtime_ns, etag, md5)

    def _multipart(self, key: str, src: SourceFile, meta: dict[str, str], pace: Pace,
                   cancel: threading.Event) -> tuple[str, str]:
        part_size = max(PART_SIZE, -(-src.size // MAX_PARTS))
        upload = self.bucket.start_multipart(key, meta)
        whole = hashlib.md5(usedforsecurity=False)
        futures: list[Future[dict[str, Any]]] = []

        def send(number: int, data: bytes) -> dict[str, Any]:
            try:
                if cancel.is_set():
                    raise Cancelled("sync cancelled")
                pace(len(data))
                return upload.upload_part(number, data)
            finally:
                self._part_slots.release()

        try:
            for number, data in enumerate(chunks(src, part_size, cancel), start=1):
                whole.update(data)
                self._part_slots.acquire()
                futures.append(self._parts.submit(send, number, data))
                failed = [f for f in futures if f.done() and f.exception() is not None]
                if failed:
                    failed[0].result()  # the first failed part stops reading the file
            parts = [f.result() for f in futures]
            if cancel.is_set():
                raise Cancelled("sync cancelled")
            etag = upload.complete(parts)
        except BaseException:
            for f in futures:
                f.cancel()
            for f in futures:
                if not f.cancelled():
                    f.exception()  # wait: no part may land after the abort
            upload.abort()
            raise
        return etag, whole.hexdigest()

    def delete(self, keys: list[str]) -> list[tuple[str, str]]:
        failed = self.bucket.delete(keys)
        refused = {k for k, _ in failed}
        with self._lock:
            for k in keys:
                if k not in refused:
                    self.state.entries.pop(k, None)
        return failed

    def close(self) -> None:
        self._parts.shutdown(wait=True, cancel_futures=True)
        self.bucket.close()


__all__ = ["PART_SIZE", "S3Destination", "format_mtime", "parse_mtime"]
