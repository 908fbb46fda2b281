"""A repository behind restic's REST backend protocol, version 2 (rest-server, the e3backup gateway).

``rest:http(s)://[USER:PASSWORD@]HOST[:PORT]/PATH/`` as restic writes it. Objects are
``PATH/config``, ``PATH/<type>/<id>`` (``data/<id>`` flat: the server fans out), listed with
``GET PATH/<type>/`` and the v2 media type (names and sizes), created with ``POST`` (the
repository itself with ``POST PATH/?create=true``), read with ``GET`` and a ``Range``, sized with
``HEAD``, removed with ``DELETE``. Spec: restic's docs, "REST Backend".

Credentials (HTTP basic) come from the URL, as in restic, or from ``username``/``password``;
``location`` never shows them. One urllib3 pool with keep-alive serves every thread; uploads
stream from the caller's file. Idempotent calls (and uploads, whose bodies are content-addressed)
are retried on connection errors and 5xx answers; a 403 (an append-only gateway refusing a
delete or an overwrite) raises ``AccessDeniedError`` with the server's reason. ``pool`` replaces
the connection pool with anything that answers ``request`` as urllib3's does: the server reads
through its own gateway in-process that way (``gateway.inprocess``).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Protocol, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import urllib3

from ..errors import AccessDeniedError, NotFoundError, StoreUnavailableError, UsageError
from .base import FileType, Handle, is_id
from .remote import EMPTY, byte_range, list_config
from .retry import Outage, RetryPolicy, call_with_retry, retry_note

T = TypeVar("T")

MEDIA_V2 = "application/vnd.x.restic.rest.v2"
DEFAULT_CONNECTIONS = 5  # restic's rest.connections default


class HTTPPool(Protocol):
    """What ``RestStore`` asks of its connection pool (urllib3's ``PoolManager`` has it)."""

    def request(self, method: str, url: str, body: Any = None, fields: Any = None,
                headers: Any = None, json: Any = None, **urlopen_kw: Any) -> urllib3.BaseHTTPResponse: ...

    def clear(self) -> None: ...


class _Retryable(Exception):
    """A transient answer (5xx, 429) or a dropped connection: worth another attempt."""


def parse_rest_url(url: str) -> tuple[str, str | None, str | None]:
    """``rest:URL`` -> (base URL ending in ``/`` without credentials, user, password)."""
    if not url.startswith("rest:"):
        raise UsageError(f"not a REST repository URL (must start with rest:): {url!r}")
    parts = urlsplit(url[len("rest:"):])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("invalid REST URL: expected rest:http(s)://HOST[:PORT]/PATH/")
    if parts.query or parts.fragment:
        raise UsageError("invalid REST URL: no query or fragment allowed")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, netloc, path, "", "")), user, password


class RestStore:
    """``Store`` over HTTP(S) to a REST v2 server; safe to share between threads."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        connections: int = DEFAULT_CONNECTIONS,
        ca_bundle: str | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        pool: HTTPPool | None = None,
    ) -> None:
        base, url_user, url_password = parse_rest_url(url)
        self._base = base
        user = username if username is not None else url_user
        secret = password if password is not None else url_password
        self._headers: dict[str, str] = {}
        if user is not None or secret is not None:
            pair = f"{user or ''}:{secret or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._retry = retry or RetryPolicy()
        self._outage = Outage()
        self.upload_connections = connections
        kwargs: dict[str, Any] = {}
        if ca_bundle:
            kwargs["ca_certs"] = ca_bundle
        self._pool: HTTPPool = pool or urllib3.PoolManager(
            num_pools=2, maxsize=max(10, 2 * connections), block=False, blocksize=1 << 20,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout), retries=False, **kwargs,
        )

    @property
    def location(self) -> str:
        return "rest:" + self._base

    def __repr__(self) -> str:
        return f"RestStore({self.location!r})"

    def _url(self, h: Handle | None = None, listing: FileType | None = None) -> str:
        if listing is not None:
            return f"{self._base}{listing.value}/"
        assert h is not None
        if h.type is FileType.CONFIG:
            return self._base + "config"
        return f"{self._base}{h.type.value}/{h.name}"

    # -- plumbing ----------------------------------------------------------------------------

    def _request(self, method: str, url: str, *, what: str, body: Any = None,
                 headers: dict[str, str] | None = None, stream: bool = False,
                 rewind: Callable[[], object] | None = None) -> urllib3.BaseHTTPResponse:
        """One call with retries; returns the response (2xx) or raises a mapped ``StoreError``."""

        def attempt() -> urllib3.BaseHTTPResponse:
            if rewind is not None:
                rewind()
            try:
                resp = self._pool.request(method, url, body=body, headers={**self._headers, **(headers or {})},
                                          preload_content=not stream, redirect=False)
            except urllib3.exceptions.HTTPError as e:
                raise _Retryable(f"{type(e).__name__}: {e}") from e
            if resp.status >= 500 or resp.status == 429:
                reason = _reason(resp)
                raise _Retryable(f"HTTP {resp.status}: {reason}")
            return resp

        try:
            resp = call_with_retry(attempt, self._retry, retryable=lambda e: isinstance(e, _Retryable),
                                   what=what, outage=self._outage)
        except _Retryable as e:
            note = retry_note(e)
            raise StoreUnavailableError(f"{what}: {e}" + (f"; {note}" if note else "")) from e
        if resp.status < 300:
            return resp
        reason = _reason(resp)
        if resp.status == 404:
            raise NotFoundError(f"{what}: not found")
        if resp.status == 416:
            return resp  # a range past the end: the caller returns nothing, as for a file
        if resp.status in (401, 403):
            raise AccessDeniedError(f"{what}: refused (HTTP {resp.status}): {reason}")
        raise StoreUnavailableError(f"{what}: HTTP {resp.status}: {reason}")

    # -- the Store interface -----------------------------------------------------------------

    def create(self) -> None:
        self._request("POST", self._base + "?create=true", what=f"create repository {self.location}")

    def save(self, h: Handle, data: bytes | memoryview) -> None:
        body = data if isinstance(data, bytes) else bytes(data)
        self._request("POST", self._url(h), body=body, what=f"save {h}",
                      headers={"Content-Type": "application/octet-stream"})

    def save_file(self, h: Handle, f: BinaryIO, size: int) -> None:
        self._request("POST", self._url(h), body=_Sized(f, size), what=f"save {h}",
                      headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                      rewind=lambda: f.seek(0))

    def load(self, h: Handle, offset: int = 0, length: int | None = None) -> bytes:
        span = byte_range(h, offset, length)
        if span == EMPTY:
            self.stat(h)
            return b""
        resp = self._request("GET", self._url(h), what=f"load {h}", headers={"Range": span} if span else {})
        if resp.status == 416:
            return b""
        return resp.data

    def load_view(self, h: Handle, offset: int, length: int) -> bytes:
        return self.load(h, offset, length)

    def stat(self, h: Handle) -> int:
        resp = self._request("HEAD", self._url(h), what=f"stat {h}")
        size = resp.headers.get("Content-Length")
        if size is None:
            raise StoreUnavailableError(f"stat {h}: the server sent no Content-Length")
        return int(size)

    def list(self, t: FileType) -> Iterator[tuple[str, int]]:
        if t is FileType.CONFIG:
            yield from list_config(self)
            return
        try:
            resp = self._request("GET", self._url(listing=t), what=f"list {t.value}",
                                 headers={"Accept": MEDIA_V2})
        except NotFoundError:
            return
        try:
            entries = json.loads(resp.data)
        except ValueError as e:
            raise StoreUnavailableError(f"list {t.value}: the server's answer is not JSON") from e
        if resp.headers.get("Content-Type", "").split(";")[0].strip() != MEDIA_V2:
            raise StoreUnavailableError(f"list {t.value}: the server does not speak the REST protocol v2")
        for entry in entries:
            name = str(entry.get("name", ""))
            if is_id(name):
                yield name, int(entry.get("size", 0))

    def remove(self, h: Handle) -> None:
        self.stat(h)  # the protocol answers 200 for a missing object; the contract wants NotFoundError
        self._request("DELETE", self._url(h), what=f"remove {h}")

    def close(self) -> None:
        self._pool.clear()


class _Sized(io.RawIOBase):
    """The first ``size`` bytes of ``f`` as a readable stream (urllib3 sends it in blocks)."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b)[: self._left]
        if not view:
            return 0
        data = self._f.read(len(view))
        view[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._left:
            n = self._left
        data = self._f.read(n)
        self._left -= len(data)
        return data


def _reason(resp: urllib3.BaseHTTPResponse) -> str:
    try:
        text = resp.data.decode("utf-8", "replace").strip()
    except Exception:
        text = ""
    return (text or resp.reason or "").splitlines()[0][:300] if (text or resp.reason) else ""


__all__ = ["MEDIA_V2", "HTTPPool", "RestStore", "parse_rest_url"]
