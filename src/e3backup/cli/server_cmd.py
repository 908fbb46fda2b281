"""``e3backup server``: run the control-plane server, and bootstrap it from the command line.

    e3backup server [--data-dir DIR] [--listen HOST:PORT] [--database-url URL]
                    [--tls-cert PEM --tls-key PEM] [--cookie-secure]
                    [--proxy-headers [--forwarded-allow-ips IPS]]
                    [--max-body-bytes N] [--max-agent-body-bytes N]
                    [--scheduler-interval S] [--workers N] [--metrics-token T]
    e3backup server [...] create-admin --email EMAIL [--password-stdin]
    e3backup server [...] create-tenant --name NAME

The lead registers the group with ``cli.add_command(server)``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from e3backup.errors import E3Error

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "e3backup" / "server"


def _settings(ctx: click.Context):  # type: ignore[no-untyped-def]
    from e3backup.server.config import Settings

    try:
        return Settings.model_validate({k: v for k, v in ctx.obj.items() if v is not None})
    except ValidationError as e:
        raise click.UsageError("; ".join(str(err["msg"]) for err in e.errors())) from e


def _state(ctx: click.Context):  # type: ignore[no-untyped-def]
    """Database opened and migrated, for the bootstrap commands."""
    from e3backup.server.app import build_state
    from e3backup.server.db import upgrade

    try:
        state = build_state(_settings(ctx))
    except E3Error as e:
        raise click.ClickException(str(e)) from e
    upgrade(state.engine)
    return state


@click.group(invoke_without_command=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    envvar="E3BACKUP_DATA_DIR",
    help="Secret key and the embedded SQLite database live here.",
)
@click.option(
    "--listen", default="127.0.0.1:8080", show_default=True, envvar="E3BACKUP_LISTEN", help="HOST:PORT"
)
@click.option(
    "--database-url",
    default=None,
    envvar="E3BACKUP_DATABASE_URL",
    help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (default: SQLite in DATA_DIR).",
)
@click.option(
    "--tls-cert",
    "tls_certfile",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="E3BACKUP_TLS_CERT",
    help="Serve HTTPS with this certificate (PEM); cookies are then Secure and HSTS is sent.",
)
@click.option(
    "--tls-key",
    "tls_keyfile",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="E3BACKUP_TLS_KEY",
    help="The private key (PEM) of --tls-cert.",
)
@click.option(
    "--cookie-secure",
    is_flag=True,
    default=None,
    envvar="E3BACKUP_COOKIE_SECURE",
    help="Secure on every cookie even on plain-HTTP requests (TLS ends at a proxy that sends no X-Forwarded-Proto).",
)
@click.option(
    "--proxy-headers",
    is_flag=True,
    default=None,
    envvar="E3BACKUP_PROXY_HEADERS",
    help="Behind a reverse proxy: take the client address and scheme from X-Forwarded-For/-Proto.",
)
@click.option(
    "--forwarded-allow-ips",
    default=None,
    envvar="E3BACKUP_FORWARDED_ALLOW_IPS",
    help="Proxies trusted for --proxy-headers: comma-separated IPs or networks, or * (default 127.0.0.1).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1024),
    default=None,
    envvar="E3BACKUP_MAX_BODY_BYTES",
    help="Largest request body from users and anonymous callers (default 1 MiB); larger: 413 before parsing.",
)
@click.option(
    "--max-agent-body-bytes",
    type=click.IntRange(min=1024),
    default=None,
    envvar="E3BACKUP_MAX_AGENT_BODY_BYTES",
    help="Largest request body from a known agent or recovery console (default 8 MiB).",
)
@click.option(
    "--browse-local-root",
    "browse_local_roots",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    envvar="E3BACKUP_BROWSE_LOCAL_ROOTS",
    help="A folder whose local-path repositories the dashboard's snapshot browser may read (repeatable; "
    "default none: only S3 repositories are browsed).",
)
@click.option(
    "--scheduler-interval",
    "scheduler_interval_seconds",
    type=click.FloatRange(min=0.1, max=3600),
    default=None,
    envvar="E3BACKUP_SCHEDULER_INTERVAL",
    help="Seconds between the scheduler's looks for due jobs (default 30); only the leader replica looks.",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    envvar="E3BACKUP_ACCESS_LOG",
    help="Log one line per request (uvicorn's access log); off saves CPU on busy servers.",
)
@click.option(
    "--db-pool-size",
    type=click.IntRange(min=1, max=500),
    default=None,
    envvar="E3BACKUP_DB_POOL_SIZE",
    help="Database connections this process keeps open (PostgreSQL; default 10, plus as many on bursts).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    envvar="E3BACKUP_WORKERS",
    help="Server processes on this port (uvicorn workers); more than one needs PostgreSQL (--database-url).",
)
@click.option(
    "--metrics-token",
    default=None,
    envvar="E3BACKUP_METRICS_TOKEN",
    help="/metrics for non-loopback clients with 'Authorization: Bearer TOKEN' (default: loopback only).",
)
@click.pass_context
def server(
    ctx: click.Context,
    data_dir: Path,
    listen: str,
    database_url: str | None,
    tls_certfile: Path | None,
    tls_keyfile: Path | None,
    cookie_secure: bool | None,
    proxy_headers: bool | None,
    forwarded_allow_ips: str | None,
    max_body_bytes: int | None,
    max_agent_body_bytes: int | None,
    browse_local_roots: tuple[Path, ...],
    scheduler_interval_seconds: float | None,
    access_log: bool,
    db_pool_size: int | None,
    workers: int,
    metrics_token: str | None,
) -> None:
    """Run the control-plane server (FastAPI on uvicorn)."""
    if forwarded_allow_ips is not None and not proxy_headers:
        raise click.UsageError("--forwarded-allow-ips needs --proxy-headers")
    ctx.obj = {
        "data_dir": data_dir,
        "listen": listen,
        "database_url": database_url,
        "tls_certfile": tls_certfile,
        "tls_keyfile": tls_keyfile,
        "cookie_secure": cookie_secure,
        "proxy_headers": proxy_headers,
        "forwarded_allow_ips": forwarded_allow_ips,
        "max_body_bytes": max_body_bytes,
        "max_agent_body_bytes": max_agent_body_bytes,
        "browse_local_roots": list(browse_local_roots) or None,
        "metrics_token": metrics_token,
        "scheduler_interval_seconds": scheduler_interval_seconds,
        "db_pool_size": db_pool_size,
    }
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from e3backup.server.app import create_app
    from e3backup.server.asgi import SETTINGS_ENV
    from e3backup.server.cluster import sole
    from e3backup.server.logs import configure_server_logging

    settings = _settings(ctx)
    configure_server_logging()
    # open live-progress streams must not hold a shutdown for minutes
    # proxy headers are handled inside the app (create_app), only from the trusted proxies
    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "log_level": "info", "proxy_headers": False,
        "timeout_graceful_shutdown": 5, "access_log": access_log,
        "ssl_certfile": settings.tls_certfile, "ssl_keyfile": settings.tls_keyfile,
    }
    if workers > 1:
        if sole.sqlite_file(settings.effective_database_url()) is not None:
            raise click.UsageError(
                "--workers needs PostgreSQL (--database-url postgresql+psycopg://...): SQLite serves one process"
            )
        # each worker process builds its own app from the same settings (asgi.app_from_env)
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # /metrics merges the workers' latencies
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="e3backup-metrics-")
        uvicorn.run("e3backup.server.asgi:app_from_env", factory=True, workers=workers, **options)
        return
    try:
        app = create_app(settings)
        claim = sole.claim(settings.effective_database_url())  # a clear refusal before uvicorn starts
    except E3Error as e:
        raise click.ClickException(str(e)) from e
    try:
        uvicorn.run(app, **options)
    finally:
        claim.release()


@server.command("migrate")
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Bring the database schema up to this version (the Debian package runs it on upgrade)."""
    from sqlalchemy import text

    state = _state(ctx)
    with state.engine.connect() as conn:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    click.echo(f"database at revision {revision}")


@server.command("add-agent-release")
@click.option("--version", "release_version", required=True, help="The version the file reports (e3backup version).")
@click.option("--platform", "build_platform", required=True, help="What it is built for, e.g. linux-x86_64.")
@click.option("--file", "file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--signature", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Its signature file, from `e3backup release sign`.")
@click.pass_context
def add_agent_release(ctx: click.Context, release_version: str, build_platform: str, file: Path,
                      signature: Path) -> None:
    """Store a signed single-file agent that tenants' agents may update to."""
    from e3backup.server.errors import FieldError
    from e3backup.server.services import agent_releases

    state = _state(ctx)
    with state.sessions() as session:
        try:
            row = agent_releases.add_release(session, state.settings.data_dir, release_version, build_platform, file,
                                             signature.read_text().strip(), state.clock.now())
        except FieldError as e:
            raise click.ClickException(str(e)) from e
        session.commit()
        click.echo(f"release {row.version} for {row.build_platform} stored (id {row.id}, sha256 {row.sha256})")


@server.command("set-agent-version")
@click.option("--tenant", "tenant_name", required=True)
@click.option("--version", "wanted", default="", help="The version its agents should run (empty: no updates).")
@click.pass_context
def set_agent_version(ctx: click.Context, tenant_name: str, wanted: str) -> None:
    """Offer a version to a tenant's agents: they update to it between runs."""
    from sqlalchemy import select

    from e3backup.server.db.models import Tenant
    from e3backup.server.services import agent_releases

    state = _state(ctx)
    with state.sessions() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
        if tenant is None:
            raise click.ClickException(f"no tenant named {tenant_name!r}")
        agent_releases.set_wanted_version(tenant, wanted)
        session.commit()
        click.echo(f"tenant {tenant.name}: agents should run {wanted}" if wanted
                   else f"tenant {tenant.name}: no agent version offered")


@server.command("create-admin")
@click.option("--email", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def create_admin(ctx: click.Context, email: str, password_stdin: bool) -> None:
    """Create an MSP administrator."""
    from e3backup.server.problems import FieldError
    from e3backup.server.services import users

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 10:
        raise click.UsageError("password: at least 10 characters")
    state = _state(ctx)
    with state.sessions() as session:
        try:
            user = users.create_user(session, state.passwords, state.clock.now(), email, password, True, None)
        except FieldError as e:
            raise click.ClickException(str(e)) from e
        session.commit()
        click.echo(f"admin {user.email} created (id {user.id})")


@server.command("create-tenant")
@click.option("--name", required=True)
@click.pass_context
def create_tenant(ctx: click.Context, name: str) -> None:
    """Create a tenant and print its agent enrollment token (shown once)."""
    from e3backup.server.problems import FieldError
    from e3backup.server.services import users

    state = _state(ctx)
    with state.sessions() as session:
        try:
            tenant = users.create_tenant(session, name, state.clock.now())
        except FieldError as e:
            raise click.ClickException(str(e)) from e
        token = users.rotate_enrollment_token(tenant)
        session.commit()
        click.echo(f"tenant {tenant.name} created (id {tenant.id})")
        click.echo(f"enrollment token: {token}")


__all__ = ["server"]
