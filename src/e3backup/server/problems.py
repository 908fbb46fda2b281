"""Errors the API answers with, and how validation errors are shaped.

Every 4xx body has ``detail`` (one readable sentence). Validation errors (422) add ``errors``:
a list of ``{"field": "policy.parallel_disk_reads", "message": ...}`` so a client can point at
the field. Hand-written rules (engine-specific job fields) raise :class:`FieldError` and come out
the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class FieldError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


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


__all__ = ["FieldError", "field_error_handler", "request_validation_handler", "validation_body"]
