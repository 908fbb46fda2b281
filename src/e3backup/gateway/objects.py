"""Reading an object in pieces, so a download never holds a whole pack in the gateway's memory.

``open_object`` returns the object's size, the byte range it will deliver and an iterator of
pieces (at most ``PIECE`` bytes each). A local store reads the file with ``pread``; an S3 store
makes one ranged GET and reads its body in pieces; any other store falls back to ranged loads.
The iterator's calls block: the gateway runs each in a worker thread.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import NotFoundError, StoreUnavailableError
from ..platform.compat import pread
from ..store.base import Handle, Store
from ..store.local import LocalStore
from ..store.s3 import S3Store
from .protocol import RangeError, parse_range

PIECE = 1 << 20
_RANGE_RE = re.compile(r"\s*bytes=(\d+-\d*|-\d+)\s*")


@dataclass
class Download:
    size: int  # the whole object's size
    offset: int
    length: int  # bytes the pieces add up to
    partial: bool  # a Range was asked for (206)
    pieces: Iterator[bytes]
    close: Any = None  # releases the file or the HTTP body early (client gone)


def open_object(store: Store, h: Handle, range_header: str | None) -> Download:
    """Start reading ``h`` (the ``Range`` applied); ``NotFoundError`` when it is not there,
    ``RangeError`` when the range is outside it."""
    inner = getattr(store, "inner", store)
    if isinstance(inner, LocalStore):
        return _local(inner, h, range_header)
    if isinstance(inner, S3Store):
        return _s3(inner, h, range_header)
    size = store.stat(h)
    rng = parse_range(range_header, size)
    offset, length = rng if rng else (0, size)

    def pieces() -> Iterator[bytes]:
        done = 0
        while done < length:
            data = store.load(h, offset + done, min(PIECE, length - done))
            if not data:
                raise StoreUnavailableError(f"{h}: ends at {offset + done} of {size} bytes")
            done += len(data)
            yield data

    return Download(size, offset, length, rng is not None, pieces())


def _local(store: LocalStore, h: Handle, range_header: str | None) -> Download:
    path = store.root / h.path()
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as e:
        raise NotFoundError(f"{h}: not found") from e
    except OSError as e:
        raise StoreUnavailableError(f"{h}: {e.strerror}") from e
    try:
        size = os.fstat(fd).st_size
        rng = parse_range(range_header, size)
    except (OSError, RangeError):
        os.close(fd)
        raise
    offset, length = rng if rng else (0, size)

    def pieces() -> Generator[bytes, None, None]:
        try:
            done = 0
            while done < length:
                data = pread(fd, min(PIECE, length - done), offset + done)
                if not data:
                    raise StoreUnavailableError(f"{h}: ends at {offset + done} of {size} bytes")
                done += len(data)
                yield data
        finally:
            os.close(fd)

    gen = pieces()
    return Download(size, offset, length, rng is not None, gen, gen.close)


def _s3(store: S3Store, h: Handle, range_header: str | None) -> Download:
    from botocore import exceptions as bce

    from ..store.s3_errors import client_error_parts

    key = store.object_key(h)
    kwargs: dict[str, Any] = {"Bucket": store.bucket, "Key": key}
    if range_header:
        if not _RANGE_RE.fullmatch(range_header):
            raise RangeError(f"unsupported Range {range_header!r}: one byte range (bytes=A-B) expected")
        kwargs["Range"] = range_header.strip()

    def get() -> Any:
        try:
            return store.client.get_object(**kwargs)
        except bce.ClientError as e:
            code, status, _ = client_error_parts(e)
            if code == "InvalidRange" or status == 416:
                return None
            raise

    resp = store.call("GET", key, get)
    if resp is None:
        size = store.stat(h)
        raise RangeError(f"range {range_header!r} is outside the object's {size} bytes")
    body = resp["Body"]
    length = int(resp["ContentLength"])
    content_range = resp.get("ContentRange")
    if content_range:  # "bytes A-B/SIZE"
        span, _, total = content_range.split(" ", 1)[-1].partition("/")
        offset = int(span.split("-")[0])
        size = int(total)
    else:
        offset, size = 0, length

    def pieces() -> Generator[bytes, None, None]:
        try:
            done = 0
            while done < length:
                data = body.read(min(PIECE, length - done))
                if not data:
                    raise StoreUnavailableError(f"{h}: the storage's answer ends at {done} of {length} bytes")
                done += len(data)
                yield data
        finally:
            body.close()

    gen = pieces()
    return Download(size, offset, length, content_range is not None, gen, gen.close)


__all__ = ["PIECE", "Download", "open_object"]
