"""Fixtures for the dashboard tests: the server tests' app and actors (on SQLite only: the pages
add no SQL of their own that would differ on PostgreSQL), and helpers to read pages."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import (  # noqa: F401  (fixtures)
    Actor,
    _sqlite_template,
    app,
    client,
    clock,
    settings_overrides,
    world,
)

HTML = {"Accept": "text/html"}


@pytest.fixture
def database_url(tmp_path: Path, _sqlite_template: Path) -> Iterator[str]:  # noqa: F811
    shutil.copyfile(_sqlite_template, tmp_path / "server.db")
    yield f"sqlite:///{tmp_path / 'server.db'}"


def page(actor: Actor, url: str) -> str:
    r = actor.get(url, headers=HTML)
    assert r.status_code == 200, (url, r.status_code, r.text[:500])
    return r.text


def csrf_of(actor: Actor) -> str:
    return actor.headers["X-CSRF-Token"]


def form_post(actor: Actor, url: str, data: dict[str, str], csrf: bool = True):  # type: ignore[no-untyped-def]
    body = {**data, **({"csrf_token": csrf_of(actor)} if csrf else {})}
    headers = {"Cookie": actor.headers["Cookie"], **HTML}
    actor.client.cookies.clear()
    return actor.client.post(url, data=body, headers=headers, follow_redirects=False)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


from tests.web.browser import live_server  # noqa: E402, F401  (fixture)
