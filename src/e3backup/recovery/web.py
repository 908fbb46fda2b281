"""The recovery console's local web UI: the dashboard's look, on 127.0.0.1, for the rescue
machine's browser.

    GET  /            sign in (the code), then the restore point and the machine's disks
    POST /sign-in     the code -> the session (RecoveryConsole.sign_in)
    GET  /confirm     the chosen disk: what it holds, type its name
    POST /start       the name typed -> the restore starts -> /progress
    GET  /progress    progress, speed, ETA and events, updated by /static/recovery.js from /status
    GET  /status      the console's status as JSON
    POST /cancel      stop the restore

Only loopback may talk to it: the listener is bound to a loopback address and every request's
``Host`` must name one (a web page elsewhere cannot reach it through DNS rebinding). Forms carry a
double-submit CSRF token (a random cookie the form repeats), so another site open in the rescue
browser cannot post to it. The pages set the dashboard's Content-Security-Policy: no inline script.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

import e3backup

from ..errors import E3Error, UsageError
from .console import DONE_MESSAGE, Phase, RecoveryConsole
from .disks import disk_info

_HERE = Path(__file__).parent
DASHBOARD_CSS = Path(e3backup.__file__).parent / "server" / "web" / "static" / "app.css"
CSRF_COOKIE = "e3rc_csrf"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or host.startswith("[") else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def create_console_app(console: RecoveryConsole) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    templates.env.filters["size"] = _size
    chosen: dict[str, str] = {}

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if not _loopback_host(request.headers.get("host", "")):
            return Response("the recovery console answers on 127.0.0.1 only", status_code=421)
        response: Response = await call_next(request)
        for k, v in HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        response = templates.TemplateResponse(
            request, name, {"csrf_token": token, "status": console.status(), **context}, status_code=status_code
        )
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict")
        return response

    def csrf_ok(request: Request, given: str) -> bool:
        expected = request.cookies.get(CSRF_COOKIE, "")
        return bool(expected) and hmac.compare_digest(expected, given)

    def refused() -> Response:
        return Response("the form expired: reload the page", status_code=403)

    @app.get("/static/app.css")
    def css() -> FileResponse:
        return FileResponse(DASHBOARD_CSS, media_type="text/css")

    @app.get("/static/recovery.js")
    def script() -> FileResponse:
        return FileResponse(_HERE / "static" / "recovery.js", media_type="text/javascript")

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        st = console.status()
        if st.phase is Phase.SIGNED_OUT:
            return page(request, "sign_in.html")
        if st.phase is not Phase.READY:
            return RedirectResponse("/progress", status_code=303)
        return page(request, "choose.html", image=console.image, disks=console.disks())

    @app.post("/sign-in", response_model=None)
    def sign_in(
        request: Request, code: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = ""
    ) -> Response:
        if not csrf_ok(request, csrf_token):
            return refused()
        try:
            console.sign_in(code)
        except E3Error as e:
            return page(request, "sign_in.html", status_code=401, error=_why(e))
        return RedirectResponse("/", status_code=303)

    @app.post("/choose", response_model=None)
    def choose(
        request: Request, target: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = ""
    ) -> Response:
        if not csrf_ok(request, csrf_token):
            return refused()
        if console.image is None:
            return RedirectResponse("/", status_code=303)
        if not target:
            return page(
                request,
                "choose.html",
                status_code=422,
                image=console.image,
                disks=console.disks(),
                error="Choose the disk to restore to.",
            )
        try:
            disk = disk_info(target)
        except E3Error as e:
            return page(
                request, "choose.html", status_code=422, image=console.image, disks=console.disks(), error=str(e)
            )
        fit = console.fit(disk)
        if not fit.ok:
            return page(
                request, "choose.html", status_code=422, image=console.image, disks=console.disks(), error=fit.reason
            )
        chosen["path"] = disk.path
        return page(request, "confirm.html", image=console.image, disk=disk, fit=fit)

    @app.post("/start", response_model=None)
    def start(
        request: Request,
        target: Annotated[str, Form()] = "",
        confirm: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "",
    ) -> Response:
        if not csrf_ok(request, csrf_token):
            return refused()
        if target != chosen.get("path"):
            return RedirectResponse("/", status_code=303)
        try:
            console.start(target, confirm)
        except E3Error as e:
            disk = disk_info(target)
            return page(
                request,
                "confirm.html",
                status_code=422,
                image=console.image,
                disk=disk,
                fit=console.fit(disk),
                error=str(e),
            )
        return RedirectResponse("/progress", status_code=303)

    @app.get("/progress", response_class=HTMLResponse)
    def progress(request: Request) -> Response:
        if console.status().phase in (Phase.SIGNED_OUT, Phase.READY):
            return RedirectResponse("/", status_code=303)
        return page(request, "progress.html", image=console.image, done_message=DONE_MESSAGE)

    @app.get("/status")
    def status() -> JSONResponse:
        return JSONResponse(console.status().to_json())

    @app.post("/cancel", response_model=None)
    def cancel(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
        if not csrf_ok(request, csrf_token):
            return refused()
        console.cancel()
        return RedirectResponse("/progress", status_code=303)

    return app


def _why(e: E3Error) -> str:
    detail = getattr(e, "detail", None)
    return str(detail) if detail else str(e)


def serve(console: RecoveryConsole, listen: str, on_ready: Any = None) -> None:
    """Serve the web UI until interrupted; prints the address to open."""
    import uvicorn

    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or not _loopback_host(host):
        raise UsageError(f"--listen must be a loopback HOST:PORT (127.0.0.1:8740), not {listen!r}")
    config = uvicorn.Config(create_console_app(console), host=host, port=int(port), log_level="warning")
    server = uvicorn.Server(config)
    config.load()
    sockets = [config.bind_socket()]
    # listening before the address is printed: uvicorn's bind_socket only binds, and a browser
    # (or a script) that opened the address before the server's loop started was refused
    sockets[0].listen(config.backlog)
    bound = sockets[0].getsockname()[1]
    print(f"Recovery console: open http://{host}:{bound}/ in this machine's browser", flush=True)
    try:
        if on_ready is not None:
            on_ready(bound)
        server.run(sockets=sockets)
    finally:
        sockets[0].close()


__all__ = ["create_console_app", "serve"]
