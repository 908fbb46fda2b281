"""Browse a files snapshot from the dashboard, search it, preview a text file, download a file
or a selection as ZIP or tar, streamed from the repository (``services.browse``,
``services.archive_stream``).

Every request is checked like every page (the run's tenant; previews and downloads need the
operator role, since they show file contents), opens the job's repository for itself only
(``services.repository_access``: a gateway-mode job's through the repository gateway with a
read-only token, never with the storage credentials) and is recorded in the audit log (``snapshot.browse``,
``snapshot.search``, ``snapshot.preview``, ``snapshot.download``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from e3backup.api.common import RunKind
from e3backup.server.db.models import Agent, Job, Run
from e3backup.server.deps import SessionDep, StateDep, client_ip
from e3backup.server.errors import Conflict, FieldError, NotFound, ServiceError
from e3backup.server.services import archive_stream, audit
from e3backup.server.services import browse as svc
from e3backup.server.services import image_browse as image_svc
from e3backup.server.services.repository_access import GatewayReader, RepoRef, open_job_repository
from e3backup.server.state import ServerState
from e3backup.server.web.deps import FormSession, PageDep, PageOperator, PageRun
from e3backup.server.web.runs import RESTORABLE

router = APIRouter(include_in_schema=False)

LARGE_DOWNLOAD = 1 << 30  # a selection above this asks for confirmation first, saying its size
STREAM_PIECE = 1 << 20
PAGE = 1000  # entries per page of a folder
_STATUS = {NotFound: 404, Conflict: 409, FieldError: 422}
BROWSABLE = ("files", "disk_image")


def _http(e: ServiceError) -> HTTPException:
    status = next((code for cls, code in _STATUS.items() if isinstance(e, cls)), 400)
    return HTTPException(status_code=status, detail=str(e.message if isinstance(e, FieldError) else e))


def browsable(run: Run, session: SessionDep) -> tuple[Job, bytes]:
    """The run's job and snapshot tree ID, or 409 saying why this run cannot be browsed."""
    job = session.get(Job, run.job_id) if run.job_id is not None else None
    if run.kind != RunKind.BACKUP.value or run.status not in RESTORABLE or not run.snapshot_id:
        raise HTTPException(status_code=409, detail=f"run {run.id} has no snapshot to browse")
    if run.snapshot_removed_at is not None:
        raise HTTPException(status_code=409, detail=f"the job's retention forgot the snapshot of run {run.id}")
    if job is None:
        raise HTTPException(status_code=409, detail=f"the job of run {run.id} was deleted, and with it the "
                            "repository's credentials")
    if job.engine not in BROWSABLE:
        raise HTTPException(status_code=409, detail=f"run {run.id} is a {job.engine} snapshot; browsing reads "
                            "files and disk image snapshots")
    return job, bytes.fromhex(run.snapshot_id)


def _record(page: PageDep, session: SessionDep, state: ServerState, request: Request, run: Run, action: str,
            **details: Any) -> None:
    audit.record(session, state.clock.now(), action, user=page.user, tenant_id=run.tenant_id, target_type="run",
                 target_id=run.id, ip=client_ip(request), details=details)
    session.commit()


def reader(request: Request, state: ServerState, page: PageDep) -> GatewayReader:
    """Reading on behalf of the page's user: gateway-mode repositories through the gateway."""
    return GatewayReader(request.app.state.gateway_pool, state.sessions, state.clock, page.user.id)


def _with_repo(state: ServerState, ref: RepoRef, via: GatewayReader) -> Any:
    return open_job_repository(state.box, ref, list(state.settings.browse_local_roots), via)


def _crumbs(path: str) -> list[tuple[str, str]]:
    parts = svc.split(path)
    return [(p, "/".join(parts[: i + 1])) for i, p in enumerate(parts)]


@router.get("/runs/{run_id}/browse", response_class=HTMLResponse)
def browse_page(run: PageRun, page: PageDep, session: SessionDep, state: StateDep, request: Request,
                path: str = "", q: str = "", offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> HTMLResponse:
    job, snapshot = browsable(run, session)
    ref, agent = RepoRef.of(job), session.get(Agent, run.agent_id) if run.agent_id is not None else None
    via = reader(request, state, page)
    truncated = False
    try:
        with _with_repo(state, ref, via) as repo:
            if job.engine == "disk_image":
                if q:
                    items, truncated = image_svc.search(repo, snapshot.hex(), q)
                else:
                    items = image_svc.list_dir(repo, snapshot.hex(), path)
            elif q:
                items, truncated = svc.search(repo, repo.load_snapshot(snapshot.hex()).tree, q)
            else:
                items = svc.list_dir(repo, repo.load_snapshot(snapshot.hex()).tree, path)
        crumbs = _crumbs(path)
    except ServiceError as e:
        raise _http(e) from e
    _record(page, session, state, request, run, "snapshot.search" if q else "snapshot.browse",
            path="/" + path.strip("/"), **({"q": q} if q else {}))
    return page.render("browse.html", active="runs", run=run, job=job, agent=agent, path=path.strip("/"),
                       crumbs=crumbs, items=items[offset : offset + PAGE], q=q, truncated=truncated,
                       offset=offset, total=len(items), page_size=PAGE, image=job.engine == "disk_image")


@router.get("/runs/{run_id}/browse/preview", response_class=HTMLResponse)
def preview_page(run: PageRun, page: PageDep, _can: PageOperator, session: SessionDep, state: StateDep,
                 request: Request, path: str) -> HTMLResponse:
    job, snapshot = browsable(run, session)
    try:
        with _with_repo(state, RepoRef.of(job), reader(request, state, page)) as repo:
            if job.engine == "disk_image":
                text, more = image_svc.preview(repo, snapshot.hex(), path)
            else:
                text, more = svc.preview(repo, repo.load_snapshot(snapshot.hex()).tree, path)
    except ServiceError as e:
        raise _http(e) from e
    _record(page, session, state, request, run, "snapshot.preview", path="/" + path.strip("/"))
    return page.render("browse_preview.html", active="runs", run=run, job=job, path=path.strip("/"),
                       crumbs=_crumbs(path), text=text, more=more)


def _attachment(name: str) -> str:
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def _stream(state: ServerState, ref: RepoRef, via: GatewayReader, snapshot: bytes, produce: Any) -> Iterator[bytes]:
    """Opens the repository when the response starts and closes it when it ends; hands the
    server pieces of at least ``STREAM_PIECE`` bytes (each piece is a hop to the event loop)."""
    with _with_repo(state, ref, via) as repo:
        pending: list[bytes] = []
        size = 0
        for chunk in produce(repo, repo.load_snapshot(snapshot.hex()).tree):
            pending.append(chunk)
            size += len(chunk)
            if size >= STREAM_PIECE:
                yield b"".join(pending)
                pending, size = [], 0
        if pending:
            yield b"".join(pending)


@router.get("/runs/{run_id}/browse/file")
def download_file(run: PageRun, page: PageDep, _can: PageOperator, session: SessionDep, state: StateDep,
                  request: Request, path: str) -> Response:
    job, snapshot = browsable(run, session)
    ref, via = RepoRef.of(job), reader(request, state, page)
    image = job.engine == "disk_image"
    try:
        with _with_repo(state, ref, via) as repo:
            if image:
                name, size = (lambda e: (e.name, e.size))(image_svc.file_entry(repo, snapshot.hex(), path)[1])
            else:
                node = svc.file_node(repo, repo.load_snapshot(snapshot.hex()).tree, path)
                name, size = svc.name_of(node), node.size
    except ServiceError as e:
        raise _http(e) from e
    _record(page, session, state, request, run, "snapshot.download", paths=["/" + path.strip("/")], format="file",
            bytes=size)

    def produce(repo: Any, root: bytes) -> Iterator[bytes]:
        if image:
            return image_svc.file_chunks(*image_svc.file_entry(repo, snapshot.hex(), path))
        return svc.file_chunks(repo, svc.file_node(repo, root, path))

    body = _stream(state, ref, via, snapshot, produce)
    return StreamingResponse(body, media_type="application/octet-stream", headers={
        "Content-Disposition": _attachment(name), "Content-Length": str(size)})


@router.post("/runs/{run_id}/browse/download", response_model=None)
def download_selection(
    run: PageRun,
    page: PageDep,
    _can: PageOperator,
    _form: FormSession,
    session: SessionDep,
    state: StateDep,
    request: Request,
    base: Annotated[str, Form()] = "",
    paths: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI reads the default, never mutates it
    format: Annotated[str, Form()] = "zip",
    confirmed: Annotated[str, Form()] = "",
) -> Response:
    """A selection as ZIP or tar; above ``LARGE_DOWNLOAD`` a page first says how large it is."""
    job, snapshot = browsable(run, session)
    image = job.engine == "disk_image"
    if format not in archive_stream.FORMATS:
        raise HTTPException(status_code=422, detail=f"format must be one of {', '.join(archive_stream.FORMATS)}")
    if not paths:
        raise HTTPException(status_code=422, detail="select at least one file or folder")
    ref, via = RepoRef.of(job), reader(request, state, page)
    def selection(repo: Any, root: bytes) -> Iterator[archive_stream.Member]:
        if image:  # through the partitions' file systems (ext4, NTFS readers)
            return archive_stream.image_members(image_svc.StoredImage.of(repo, snapshot.hex()), base, paths)
        return archive_stream.members(repo, root, base, paths)

    try:
        with _with_repo(state, ref, via) as repo:
            files, size = archive_stream.totals(selection(repo, repo.load_snapshot(snapshot.hex()).tree))
    except ServiceError as e:
        raise _http(e) from e
    if size > LARGE_DOWNLOAD and not confirmed:
        return page.render("browse_confirm.html", active="runs", run=run, base=base, paths=paths, format=format,
                           files=files, size=size)
    _record(page, session, state, request, run, "snapshot.download", paths=["/" + p.strip("/") for p in paths],
            format=format, files=files, bytes=size)
    writer = archive_stream.zip_stream if format == "zip" else archive_stream.tar_stream
    body = _stream(state, ref, via, snapshot, lambda repo, root: writer(selection(repo, root)))
    stem = svc.split(base)[-1] if svc.split(base) else f"snapshot-{snapshot.hex()[:8]}"
    media = "application/zip" if format == "zip" else "application/x-tar"
    return StreamingResponse(body, media_type=media, headers={"Content-Disposition": _attachment(f"{stem}.{format}")})


__all__ = ["browsable", "router"]
