"""Versions per agent on the dashboard: what each agent reported with its last poll, and which
are older than the version wanted (the server's own)."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from e3backup.buildinfo import version
from e3backup.server.services import agent_releases
from tests.server.conftest import Actor, World
from tests.web.conftest import form_post, page


def _version_cell(html: str, hostname: str) -> str:
    row = re.search(rf"<tr>\s*<td data-label=\"Machine\"><a [^>]*>{hostname}</a></td>(.*?)</tr>", html, re.S)
    assert row, html
    cell = re.search(r'<td data-label="Version" class="agent-version">(.*?)</td>', row.group(1), re.S)
    assert cell
    return cell.group(1)


def test_agents_page_shows_each_version_and_flags_the_old_ones(world: World) -> None:
    assert world.agent_a.post("/api/agent/next_run", json={"agent_version": "0.0.9"}).status_code == 200
    assert world.agent_b.post("/api/agent/next_run", json={"agent_version": version()}).status_code == 200
    html = page(world.admin, "/agents")
    old, current = _version_cell(html, "acme-pc"), _version_cell(html, "gx-srv")
    assert "0.0.9" in old and "out of date" in old and f"wanted: {version()}" in old
    assert version() in current and "out of date" not in current
    agents = {a["hostname"]: a for a in world.admin.get("/api/agents").json()}
    assert agents["acme-pc"]["out_of_date"] is True and agents["acme-pc"]["wanted_version"] == version()
    assert agents["gx-srv"]["out_of_date"] is False
    assert "out of date (wanted" in page(world.admin, f"/agents/{world.agent_a.id}")


def _store_release(app: FastAPI, tmp: Path, version_: str, platform: str = "linux-x86_64") -> None:
    """A stored release as ``add-agent-release`` makes it (the server does not verify signatures)."""
    file = tmp / f"agent-{version_}"
    file.write_bytes(f"agent {version_}".encode())
    state = app.state.e3
    with state.sessions() as s:
        agent_releases.add_release(s, state.settings.data_dir, version_, platform, file,
                                   base64.b64encode(b"s" * 64).decode(), state.clock.now())
        s.commit()


def _offer(agent: Actor) -> dict[str, Any] | None:
    r = agent.post("/api/agent/next_run", json={"agent_version": "0.0.9", "build_platform": "linux-x86_64",
                                                 "self_update": True})
    assert r.status_code == 200, r.text
    update: dict[str, Any] | None = r.json()["update"]
    return update


def test_an_admin_sets_the_wanted_version_over_the_api_and_the_tenants_agents_are_offered_it(
    app: FastAPI, world: World, tmp_path: Path
) -> None:
    _store_release(app, tmp_path, "0.2.0")
    a = world.tenant_a["id"]
    r = world.admin.get(f"/api/tenants/{a}/agent-version")
    assert r.status_code == 200 and r.json()["wanted_version"] is None
    assert [x["version"] for x in r.json()["releases"]] == ["0.2.0"]
    assert _offer(world.agent_a) is None
    r = world.admin.request("PUT", f"/api/tenants/{a}/agent-version", json={"version": "0.2.0"})
    assert r.status_code == 200 and r.json()["wanted_version"] == "0.2.0", r.text
    offer = _offer(world.agent_a)
    assert offer is not None and offer["version"] == "0.2.0" and offer["url"].startswith("/api/agent/releases/")
    assert _offer(world.agent_b) is None  # another tenant's agents are not offered it
    agents = {x["hostname"]: x for x in world.admin.get("/api/agents").json()}
    assert agents["acme-pc"]["wanted_version"] == "0.2.0"
    entries = world.admin.get("/api/audit", params={"action": "tenant.agent_version"}).json()
    assert any(e["details"] == {"from": None, "to": "0.2.0"} for e in entries.get("items", entries))
    r = world.admin.request("PUT", f"/api/tenants/{a}/agent-version", json={"version": None})
    assert r.status_code == 200 and r.json()["wanted_version"] is None
    assert _offer(world.agent_a) is None


def test_only_msp_admins_set_the_agent_version_and_bad_input_is_refused(
    app: FastAPI, world: World, tmp_path: Path
) -> None:
    _store_release(app, tmp_path, "0.2.0")
    a, b = world.tenant_a["id"], world.tenant_b["id"]
    url = f"/api/tenants/{a}/agent-version"
    anonymous = Actor(world.client)
    assert anonymous.request("PUT", url, json={"version": "0.2.0"}).status_code == 401
    assert anonymous.get(url).status_code == 401
    for who in (world.user_a,):  # a tenant user, for their own tenant
        r = who.request("PUT", url, json={"version": "0.2.0"})
        assert r.status_code == 403 and "administrators" in r.json()["detail"], r.text
        assert who.get(url).status_code == 403
    assert world.user_a.request("PUT", f"/api/tenants/{b}/agent-version", json={"version": "0.2.0"}).status_code == 404
    no_csrf = Actor(world.client, {"Cookie": world.admin.headers["Cookie"]})
    assert no_csrf.request("PUT", url, json={"version": "0.2.0"}).status_code == 403
    for body, field in (({"version": 5}, "version"), ({"version": "0.2.0; rm -rf /"}, "version"),
                        ({"version": "9" * 65}, "version"), ({}, "version"), ({"version": "0.2.0", "x": 1}, "x")):
        r = world.admin.request("PUT", url, json=body)
        assert r.status_code == 422 and field in r.text, (body, r.text)
    r = world.admin.request("PUT", url, json={"version": "7.7.7"})
    assert r.status_code == 422 and "no release 7.7.7 is stored" in r.text, r.text
    assert world.admin.request("PUT", "/api/tenants/999999/agent-version", json={"version": None}).status_code == 404
    assert world.admin.get(url).json()["wanted_version"] is None  # nothing was changed by the refusals
    assert _offer(world.agent_a) is None


def test_the_agents_page_version_form_is_for_admins_only(app: FastAPI, world: World, tmp_path: Path) -> None:
    _store_release(app, tmp_path, "0.2.0")
    a = world.tenant_a["id"]
    assert 'id="agent-version"' not in page(world.user_a, "/agents")
    r = form_post(world.user_a, "/agents/agent-version", {"tenant_id": str(a), "version": "0.2.0"})
    assert r.status_code == 403
    r = form_post(world.admin, "/agents/agent-version", {"tenant_id": str(a), "version": "0.2.0"}, csrf=False)
    assert r.status_code == 403
    r = form_post(world.admin, "/agents/agent-version", {"tenant_id": str(a), "version": "7.7.7"})
    assert r.status_code == 422 and "no release 7.7.7 is stored" in r.text
    assert world.admin.get(f"/api/tenants/{a}/agent-version").json()["wanted_version"] is None
    r = form_post(world.admin, "/agents/agent-version", {"tenant_id": str(a), "version": "0.2.0"})
    assert r.status_code == 303 and r.headers["location"] == "/agents?notice=version-saved"
    html = page(world.admin, "/agents?notice=version-saved")
    assert "Agent version saved." in html and '<option value="0.2.0" selected>0.2.0</option>' in html
    assert _offer(world.agent_a) is not None
