"""The agents page's version control in real Chromium: a tenant user does not see it; the MSP
admin picks a stored release for a tenant, the page says so and flags the tenant's agent out of
date, and that agent's next poll is offered the release; "none offered" takes it back."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e3backup.server.services import agent_releases
from tests.web.browser import LiveServer, shot, sign_in, unlabelled_controls

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect


@pytest.fixture
def ctx(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    violations: list[str] = []
    context.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield context
    context.close()
    assert violations == []


def _offer(live: LiveServer) -> dict[str, Any] | None:
    answer = live.agent_call("acme-pc", "next_run", {"agent_version": "0.1.0", "build_platform": "linux-x86_64",
                                                     "self_update": True})
    update: dict[str, Any] | None = answer["update"]
    return update


def test_the_admin_offers_a_release_to_a_tenant_from_the_agents_page(
    ctx: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    state = live_server.app.state.e3
    file = tmp_path / "agent-0.3.0"
    file.write_bytes(b"a signed single-file agent")
    with state.sessions() as s:
        agent_releases.add_release(s, state.settings.data_dir, "0.3.0", "linux-x86_64", file,
                                   base64.b64encode(b"s" * 64).decode(), state.clock.now())
        s.commit()
    page = ctx.new_page()
    sign_in(page, live_server.url, "alice@acme.example", "/agents")
    expect(page.locator("#agents")).to_contain_text("acme-pc")
    expect(page.get_by_role("heading", name="Agent version offered")).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, live_server.url, "admin@msp.example", "/agents")
    acme = page.get_by_label("Agent version for Acme")
    expect(acme).to_have_value("")
    assert _offer(live_server) is None
    acme.select_option("0.3.0")
    page.locator('form[data-tenant="Acme"]').get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Agent version saved.")
    expect(page.get_by_label("Agent version for Acme")).to_have_value("0.3.0")
    expect(page.get_by_label("Agent version for Globex")).to_have_value("")
    row = page.locator("#agents tr", has_text="acme-pc")
    expect(row.locator(".agent-version")).to_contain_text("out of date")
    assert unlabelled_controls(page) == []
    shot(page, "agent-version-offered")
    offer = _offer(live_server)  # the agent's next poll
    assert offer is not None and offer["version"] == "0.3.0"

    page.get_by_label("Agent version for Acme").select_option(label="none offered (no updates)")
    page.locator('form[data-tenant="Acme"]').get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Agent version saved.")
    expect(page.get_by_label("Agent version for Acme")).to_have_value("")
    assert _offer(live_server) is None
