"""Every integer a client sends (path, query, body) is bounded to the database's range: a value
of 2^63 is a 422 naming the field, never a 500 or a reset connection (OverflowError in SQLite,
an out-of-range error in PostgreSQL). The routes are read from the app, so a new route with an
integer parameter is covered without editing this test."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from tests.server.conftest import Actor, World

BIG = 2**63


def _strip(annotation: Any) -> list[Any]:
    """The alternatives of an annotation without Annotated/Optional wrappers."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _strip(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _strip(arg)]
    return [annotation]


def _is_int(annotation: Any) -> bool:
    return any(a is int for a in _strip(annotation))


def _int_paths(model: type[BaseModel], prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Paths to every integer field of a request model, through nested models and lists."""
    for name, info in model.model_fields.items():
        key = info.validation_alias if isinstance(info.validation_alias, str) else name
        for alt in _strip(info.annotation):
            if alt is int:
                yield (*prefix, key)
            elif isinstance(alt, type) and issubclass(alt, BaseModel):
                yield from _int_paths(alt, (*prefix, key))
            elif typing.get_origin(alt) is list:
                for inner in _strip(typing.get_args(alt)[0]):
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        yield from _int_paths(inner, (*prefix, key, 0))


def _nested(path: tuple[str | int, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    return [_nested(rest, value)] if isinstance(head, int) else {head: _nested(rest, value)}


def _cases(app: FastAPI) -> Iterator[tuple[str, str, str, dict[str, Any], str]]:
    """(method, url, where, request kwargs, expected field) for every integer a route accepts."""
    for route in _routes(app.routes):
        dep = route.dependant
        flat_path = [p for d in [dep, *_all(dep)] for p in d.path_params]
        flat_query = [p for d in [dep, *_all(dep)] for p in d.query_params]
        ids = {p.name: 1 for p in flat_path}
        for method in sorted(route.methods):
            for param in flat_path:
                if _is_int(param.field_info.annotation):
                    url = route.path_format.format(**{**ids, param.name: BIG})
                    yield method, url, "path", {}, param.name
            url = route.path_format.format(**ids)
            for param in flat_query:
                if _is_int(param.field_info.annotation):
                    yield method, url, "query", {"params": {param.alias: BIG}}, param.alias
            for param in dep.body_params:
                model = param.field_info.annotation
                for alt in _strip(model):
                    if isinstance(alt, type) and issubclass(alt, BaseModel):
                        for path in _int_paths(alt):
                            field = ".".join(str(p) for p in path)
                            yield method, url, "body", {"json": _nested(path, BIG)}, field


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    """The API routes, through included routers (FastAPI keeps those as wrappers)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _routes(route.original_router.routes)


def _all(dep: Any) -> Iterator[Any]:
    for sub in dep.dependencies:
        yield sub
        yield from _all(sub)


def _caller(world: World, url: str, recovery: Actor) -> Actor:
    if url.startswith("/api/agent/") and url != "/api/agent/enroll":
        return world.agent_a
    user_routes = ("/api/recovery/sessions", "/api/recovery/codes")  # the dashboard's, not the console's
    if url.startswith("/api/recovery/") and not url.startswith(user_routes):
        return recovery
    return world.admin


def test_every_integer_parameter_is_bounded(app: FastAPI, world: World) -> None:
    job = world.admin.post(
        "/api/jobs",
        json={
            "name": "image",
            "engine": "disk_image",
            "agent_id": world.agent_a.id,
            "disk_source_volume": "C:",
            "destination": {"type": "local", "path": "/srv/r", "repository_password": "repo-pass-123"},
        },
    )
    assert job.status_code == 201, job.text
    dest = world.admin.post("/api/destinations", json={"name": "d", "tenant_id": world.tenant_a["id"], "destination": {
        "type": "local", "path": "/srv/r", "repository_password": "repo-pass-123"}})  # destination 1
    assert dest.status_code == 201, dest.text
    session = world.admin.post("/api/recovery/sessions", json={"job_id": job.json()["id"], "snapshot_id": "abc"})
    assert session.status_code == 201, session.text
    run_id = session.json()["run_id"]
    recovery = Actor(world.client, {"Authorization": f"Bearer {session.json()['session_token']}"})
    cases = list(_cases(app))
    wheres = {c[2] for c in cases}
    assert wheres == {"path", "query", "body"}, wheres  # the walk found every kind
    assert len(cases) > 40
    for method, url, where, kwargs, field in cases:
        caller = _caller(world, url, recovery)
        if caller is recovery and field != "run_id" and "json" in kwargs:
            kwargs = {"json": {"run_id": run_id, **kwargs["json"]}}
        if method == "POST" and not url.startswith("/api/"):  # a dashboard form: its CSRF field
            kwargs = {**kwargs, "data": {"csrf_token": world.admin.headers["X-CSRF-Token"]}}
        r = caller.request(method, url, **kwargs)
        assert r.status_code == 422, f"{method} {url} {where} {field}: {r.status_code} {r.text[:300]}"
        fields = [e["field"] for e in r.json().get("errors", [])]
        assert field in fields, f"{method} {url} {where} {field}: {r.text[:300]}"


def test_the_tenant_switcher_ignores_a_huge_tenant_id(world: World) -> None:
    r = world.admin.post(
        "/tenant",
        data={"tenant_id": str(BIG), "csrf_token": world.admin.headers["X-CSRF-Token"]},
        headers={"Accept": "text/html"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "e3_tenant=" in r.headers["set-cookie"] and 'e3_tenant=""' in r.headers["set-cookie"]
