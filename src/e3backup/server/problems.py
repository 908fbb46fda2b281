"""Errors the API answers with, and how validation errors are shaped.

Every 4xx body has ``detail`` (one readable sentence). Validation errors (422) add ``errors``:
a list of ``{"field": "policy.parallel_disk_reads", "message": ...}`` so a client can point at
the field. Hand-written rules (engine-specific job fields) raise :class:`FieldError` and come out
the same way; the services' other domain errors (``errors.py``) become 404 and 409 here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from e3backup.server.errors import Conflict, FieldError, NotFound, ServiceError


def _field_name(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie", "form"):
        parts = parts[1:]
    # drop pydantic's union tags ("s3", "function-after[...]") that are not field names
    return ".".join(p for p in parts if not p.startswith(("function-", "tagged-union")))


def validation_body(errors: list[dict[str, str]]) -> dict[str, Any]:
    summary = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
    return {"detail": f"invalid request: {summary}", "errors": errors}


async def request_validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _field_name(e.get("loc", ())), "message": str(e.get("msg", ""))} for e in exc.errors()
    ]
    return JSONResponse(status_code=422, content=validation_body(errors))


async def field_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FieldError)
    return JSONResponse(
        status_code=422, content=validation_body([{"field": exc.field, "message": exc.message}])
    )


async def service_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """NotFound -> 404, Conflict -> 409 (FieldError has its own handler: 422 with ``errors``)."""
    assert isinstance(exc, ServiceError)
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
    return JSONResponse(status_code=status, content={"detail": str(exc)})


__all__ = [
    "FieldError",
    "field_error_handler",
    "request_validation_handler",
    "service_error_handler",
    "validation_body",
]
