"""``e3backup server``: bootstrap commands and the uvicorn launch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from e3backup.cli.server_cmd import server
from e3backup.server import create_app
from tests.server.conftest import PASSWORD, make_settings


def test_create_tenant_and_admin_then_sign_in(tmp_path: Path, database_url: str) -> None:
    base = ["--data-dir", str(tmp_path / "data"), "--database-url", database_url]
    runner = CliRunner()
    r = runner.invoke(server, [*base, "create-tenant", "--name", "Acme"])
    assert r.exit_code == 0, r.output
    token = r.output.split("enrollment token: ")[1].strip()
    assert token.startswith("e3e_")
    r = runner.invoke(server, [*base, "create-tenant", "--name", "Acme"])
    assert r.exit_code != 0
    assert "already exists" in r.output
    r = runner.invoke(
        server, [*base, "create-admin", "--email", "ops@msp.example", "--password-stdin"], input="x\n"
    )
    assert r.exit_code != 0
    assert "10 characters" in r.output
    r = runner.invoke(
        server,
        [*base, "create-admin", "--email", "ops@msp.example", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert r.exit_code == 0, r.output
    settings = make_settings(tmp_path / "data", database_url, secret_key=None, argon2_time_cost=3)
    with TestClient(create_app(settings)) as client:
        r = client.post("/api/auth/login", json={"email": "ops@msp.example", "password": PASSWORD})
        assert r.status_code == 200
        body = {"enrollment_token": token, "hostname": "h1", "os": "linux"}
        assert client.post("/api/agent/enroll", json=body).status_code == 201


def test_server_runs_uvicorn_on_the_listen_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(app: Any, host: str, port: int, **_kw: Any) -> None:
        seen.update(app=app, host=host, port=port)

    monkeypatch.setattr("uvicorn.run", fake_run)
    r = CliRunner().invoke(server, ["--data-dir", str(tmp_path), "--listen", "127.0.0.1:18080",
                                    "--browse-local-root", "/srv/repos", "--browse-local-root", "/mnt/r"])
    assert r.exit_code == 0, r.output
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 18080)
    assert seen["app"].state.e3.settings.browse_local_roots == [Path("/srv/repos"), Path("/mnt/r")]
    assert seen["app"].title == "e3backup control plane"
    assert (tmp_path / "secret.key").exists()


def test_bad_listen_address_is_a_usage_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(server, ["--data-dir", str(tmp_path), "--listen", "nope"])
    assert r.exit_code == 2
    assert "HOST:PORT" in r.output


def test_the_server_prints_its_own_info_lines_and_no_sql(tmp_path: Path) -> None:
    """``e3backup server`` says when it is ready (its INFO lines were lost behind the command
    line's warnings-only logging) without SQLAlchemy's statements (INFO once enabled)."""
    import httpx

    from tests.server.live import server_process

    data = tmp_path / "data"
    data.mkdir()
    with server_process(data) as (url, _proc):
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    port = url.rsplit(":", 1)[1]
    log = (tmp_path / f"server-{port}.log").read_text()
    assert "INFO:     e3backup.server.app: e3backup server ready (database: sqlite" in log, log
    assert "SELECT" not in log and "sqlalchemy" not in log, log
