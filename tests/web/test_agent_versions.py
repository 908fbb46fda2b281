"""Versions per agent on the dashboard: what each agent reported with its last poll, and which
are older than the version wanted (the server's own)."""

from __future__ import annotations

import re

from e3backup.buildinfo import version
from tests.server.conftest import World
from tests.web.conftest import page


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
