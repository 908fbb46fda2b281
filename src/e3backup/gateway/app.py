"""The gateway's HTTP side: a plain ASGI app serving restic's REST protocol v2 under ``/gateway/``.

It runs inside the server process, in front of the FastAPI app (``GatewayRouter``), so its
requests skip the API's body limit and middleware: packs stream in and out in pieces. Uploads
are spooled to a temporary file while their SHA-256 is computed (a name that does not match its
content is refused, as rest-server does), then handed to the store (``save_file``: sendfile for a
folder, one PUT for S3); downloads are read in 1 MiB pieces (``objects``). Blocking calls (the
database, the storage) run in worker threads; the event loop only moves bytes. Keep-alive is
uvicorn's HTTP/1.1.

Every request is authorised against the database (``access.grant_for``): nothing about tokens,
grants or locks lives in this process, so replicas behind a load balancer answer alike.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import tempfile
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import anyio
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from ..errors import AccessDeniedError, E3Error, NotFoundError
from ..server.db.models import GatewayLock, Job
from ..server.errors import Conflict
from ..server.services import gateway_audit
from ..server.state import ServerState
from ..store.base import FileType, Handle, Store
from .access import Grant, Refused, check_write, grant_for, holder
from .objects import open_object
from .protocol import MEDIA_V1, MEDIA_V2, PREFIX, RangeError, Target, parse_path
from .stores import StorePool
from .verify import Invalid, MasterKeys, check_upload

log = logging.getLogger("e3backup.gateway")

THREADS = 40  # the gateway's own worker threads (per event loop), apart from the app's

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Answer(Exception):
    """Ends a request with ``status`` and a one-line reason (text/plain)."""

    def __init__(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


@dataclass
class _Request:
    method: str
    target: Target
    query: str
    headers: dict[str, str]


@dataclass
class _Repo:
    """The request's repository: its store and what checking an upload needs."""

    job_id: int
    store: Store
    password: bytes


def _token(headers: dict[str, str]) -> str:
    """The HTTP basic password (restic puts it there from ``rest:http://user:TOKEN@host/...``)."""
    value = headers.get("authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            password = ""
        if password:
            return password
    raise _Answer(401, "a gateway token is required (HTTP basic password)",
                  [(b"www-authenticate", b'Basic realm="e3backup gateway"')])


class Gateway:
    """The ASGI app; ``state`` gives the database, the secret box and the settings."""

    def __init__(self, state: ServerState) -> None:
        settings = state.settings
        self._state = state
        self._stores = StorePool(state.box, list(settings.gateway_local_roots))
        self._keys = MasterKeys()
        self._spool = settings.gateway_spool_dir or settings.data_dir / "gateway-spool"
        self._max_object = settings.gateway_max_object_bytes
        self._limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
            weakref.WeakKeyDictionary())

    async def _thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker thread of the gateway's own limiter: the dashboard's threads
        wait on the gateway (``inprocess``), so sharing the app's limiter with them could leave
        the gateway no thread to answer them with."""
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = anyio.CapacityLimiter(THREADS)
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)

    def close(self) -> None:
        self._stores.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        client = scope.get("client")
        ip = str(client[0]) if client else None
        grant: Grant | None = None
        try:
            target = parse_path(scope["path"])
            if target is None:
                raise _Answer(404, "not a repository path (/gateway/job-<id>/...)")
            req = _Request(method, target, scope.get("query_string", b"").decode("latin-1"), headers)
            grant, repo = await self._thread(self._authorize, _token(headers), req, ip)
            await self._dispatch(req, grant, repo, receive, send)
        except _Answer as a:
            await _reply(send, a.status, a.reason, a.headers, head=method == "HEAD")
        except Refused as e:
            log.warning("gateway refused %s %s: %s", method, scope["path"], e)
            if grant is not None:
                await self._thread(self._audit, gateway_audit.REFUSED, grant.who, grant.tenant_id, req, ip,
                                   {"reason": str(e)[:300]})
            await _reply(send, 403, str(e), head=method == "HEAD")

    # -- authorisation ----------------------------------------------------------------------

    def _authorize(self, token: str, req: _Request, ip: str | None) -> tuple[Grant, _Repo]:
        now = self._state.clock.now()
        job_id = req.target.job_id
        with self._state.sessions() as session:
            grant = grant_for(session, token, job_id, now)
            if grant is None:
                who, tenant_id = holder(session, token)
                self._audit(gateway_audit.WRONG_TOKEN, who, tenant_id, req, ip,
                            {"reason": "the token has no right on this repository"})
                # the same answer as a repository that does not exist: nothing leaks
                raise _Answer(404, "no such repository for this token")
            job = session.get(Job, job_id)
            assert job is not None
            try:
                store, password = self._stores.for_job(job)
                return grant, _Repo(job_id, store, password)
            except (Conflict, E3Error) as e:
                log.error("gateway: job %s's storage cannot be opened: %s", job_id, e)
                raise _Answer(503, f"the repository's storage cannot be opened: {e}") from e

    def _audit(self, action: str, who: str, tenant_id: int | None, req: _Request, ip: str | None,
               details: dict[str, Any]) -> None:
        """A refused attempt into the audit log (coalesced: ``services.gateway_audit``). A failure
        to record is logged, never turned into another answer."""
        t = req.target
        what = str(t.handle) if t.handle is not None else f"{t.listing.value}/" if t.listing is not None else "/"
        try:
            with self._state.sessions() as session:
                gateway_audit.note(session, self._state.clock.now(), action, who=who, tenant_id=tenant_id,
                                   job_id=t.job_id, ip=ip, details={"request": f"{req.method} {what}", **details})
                session.commit()
        except Exception:
            log.exception("gateway: the refused %s could not be recorded in the audit log", req.method)

    # -- dispatch ---------------------------------------------------------------------------

    async def _dispatch(self, req: _Request, grant: Grant, repo: _Repo, receive: Receive, send: Send) -> None:
        t, m, store = req.target, req.method, repo.store
        if t.root:
            if m != "POST":
                raise _Answer(405, "only POST /?create=true on a repository", [(b"allow", b"POST")])
            if "create=true" not in req.query.split("&"):
                raise _Answer(400, "POST on a repository needs ?create=true")
            check_write(grant, m, None, exists=False)
            await self._run(store.create)
            await _reply(send, 200, "")
        elif t.listing is not None:
            if m != "GET":
                raise _Answer(405, "only GET on a type's listing", [(b"allow", b"GET")])
            await self._list(req, store, t.listing, send)
        else:
            assert t.handle is not None
            if m in ("HEAD", "GET"):
                await self._read(req, store, t.handle, send)
            elif m == "POST":
                await self._save(req, grant, repo, t.handle, receive, send)
            elif m == "DELETE":
                await self._delete(grant, store, t.handle, send)
            else:
                raise _Answer(405, f"{m} is not part of the protocol", [(b"allow", b"HEAD, GET, POST, DELETE")])

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A blocking storage call in a worker thread, its errors mapped to HTTP answers."""
        try:
            return await self._thread(fn, *args)
        except NotFoundError as e:
            raise _Answer(404, str(e)) from e
        except AccessDeniedError as e:
            raise _Answer(403, str(e)) from e
        except E3Error as e:
            log.error("gateway: storage error: %s", e)
            raise _Answer(500, f"storage error: {e}") from e

    async def _list(self, req: _Request, store: Store, t: FileType, send: Send) -> None:
        entries = await self._run(lambda: list(store.list(t)))
        if req.headers.get("accept", "").split(";")[0].strip() == MEDIA_V2:
            body = json.dumps([{"name": n, "size": s} for n, s in entries]).encode()
            media = MEDIA_V2
        else:
            body = json.dumps([n for n, _ in entries]).encode()
            media = MEDIA_V1
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _read(self, req: _Request, store: Store, h: Handle, send: Send) -> None:
        if req.method == "HEAD":
            size = await self._run(store.stat, h)
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-length", str(size).encode()), (b"content-type", b"application/octet-stream")]})
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            dl = await self._run(open_object, store, h, req.headers.get("range"))
        except RangeError as e:
            raise _Answer(416, str(e)) from e
        headers = [(b"content-length", str(dl.length).encode()), (b"content-type", b"application/octet-stream"),
                   (b"accept-ranges", b"bytes")]
        if dl.partial:
            end = dl.offset + dl.length - 1
            headers.append((b"content-range", f"bytes {dl.offset}-{end}/{dl.size}".encode()))
        try:
            first = await self._thread(next, dl.pieces, None)
        except E3Error as e:
            raise _Answer(500, f"storage error: {e}") from e
        await send({"type": "http.response.start", "status": 206 if dl.partial else 200, "headers": headers})
        piece = first
        try:
            while piece is not None:
                after = await self._thread(next, dl.pieces, None)
                await send({"type": "http.response.body", "body": piece, "more_body": after is not None})
                piece = after
            if first is None:
                await send({"type": "http.response.body", "body": b""})
        except E3Error as e:  # the status is sent: the only signal left is a short body
            log.error("gateway: reading %s failed mid-download: %s", h, e)
            raise
        finally:
            if dl.close is not None:
                dl.close()

    async def _save(self, req: _Request, grant: Grant, repo: _Repo, h: Handle, receive: Receive,
                    send: Send) -> None:
        store = repo.store
        exists = await self._exists(store, h)
        check_write(grant, "POST", h, exists)
        declared = req.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_object:
            raise _Answer(413, f"{h}: {declared} bytes is over the gateway's {self._max_object}-byte object limit")
        self._spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self._spool) as f:
            digest = hashlib.sha256()
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client went away: nothing was stored
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > self._max_object:
                        raise _Answer(413, f"{h}: over the gateway's {self._max_object}-byte object limit")
                    f.write(chunk)
                    digest.update(chunk)
                if not message.get("more_body", False):
                    break
            if h.type is not FileType.CONFIG and digest.hexdigest() != h.name:
                raise _Answer(400, f"{h}: the content's SHA-256 is {digest.hexdigest()}, not its name")
            f.flush()
            if h.type is not FileType.PACK:
                await self._run(self._check, repo, h, f)
            await self._run(store.save_file, h, f, size)
        if h.type is FileType.LOCK and grant.agent_id is not None:
            await self._thread(self._own_lock, grant, h.name)
        await _reply(send, 200, "")

    def _check(self, repo: _Repo, h: Handle, f: BinaryIO) -> None:
        """An upload other than a pack must be readable with the repository's key (``verify``)."""
        f.seek(0)
        data = f.read()
        try:
            check_upload(h, data, self._keys.get(repo.job_id, repo.store, repo.password), repo.password)
        except Invalid as e:
            raise _Answer(400, str(e)) from e

    async def _exists(self, store: Store, h: Handle) -> bool:
        try:
            await self._run(store.stat, h)
        except _Answer as a:
            if a.status == 404:
                return False
            raise
        return True

    def _own_lock(self, grant: Grant, name: str) -> None:
        with self._state.sessions() as session:
            session.add(GatewayLock(job_id=grant.job_id, name=name, agent_id=grant.agent_id,
                                    created_at=self._state.clock.now()))
            try:
                session.commit()
            except DBIntegrityError:
                session.rollback()  # saved again after a retry: already recorded

    def _lock_owner(self, grant: Grant, name: str) -> int | None:
        with self._state.sessions() as session:
            return session.scalar(select(GatewayLock.agent_id).where(
                GatewayLock.job_id == grant.job_id, GatewayLock.name == name))

    def _forget_lock(self, grant: Grant, name: str) -> None:
        with self._state.sessions() as session:
            session.execute(delete(GatewayLock).where(GatewayLock.job_id == grant.job_id, GatewayLock.name == name))
            session.commit()

    async def _delete(self, grant: Grant, store: Store, h: Handle, send: Send) -> None:
        check_write(grant, "DELETE", h, exists=True)
        if h.type is FileType.LOCK:
            owner = await self._thread(self._lock_owner, grant, h.name)
            if owner != grant.agent_id:
                raise Refused(f"deleting {h} refused: it is not a lock this agent created ({grant.who}); "
                              "stale locks of others are removed by the server's maintenance worker")
        try:
            await self._run(store.remove, h)
        except _Answer as a:
            if a.status != 404:
                raise  # a missing object is fine (the protocol's DELETE is idempotent)
        if h.type is FileType.LOCK:
            await self._thread(self._forget_lock, grant, h.name)
        await _reply(send, 200, "")


async def _reply(send: Send, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None = None,
                 head: bool = False) -> None:
    body = (reason + "\n").encode() if reason else b""
    start = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
             *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": b"" if head else body})


class GatewayRouter:
    """ASGI middleware: ``/gateway/...`` to the gateway, everything else to the server's app."""

    def __init__(self, app: Callable[..., Awaitable[None]], gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await self.gateway(scope, receive, send)
        else:
            await self.app(scope, receive, send)


__all__ = ["Gateway", "GatewayRouter"]
