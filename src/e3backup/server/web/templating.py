"""The Jinja2 environment of the dashboard: templates from package data, autoescaped HTML."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from e3backup.events import meaning
from e3backup.server.web import format as fmt
from e3backup.server.web.wizard import ENGINE_LABELS

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        size=fmt.size,
        speed=fmt.speed,
        duration=fmt.duration,
        when=fmt.when,
        ns_when=fmt.ns_when,
        percent=fmt.percent,
        engine_label=lambda e: ENGINE_LABELS.get(str(e), str(e)),
        meaning=meaning,
    )
    env.globals.update(ago=fmt.ago)
    return env


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = environment().get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code)


__all__ = ["STATIC", "TEMPLATES", "environment", "render"]
