"""What the stores that reach their objects over HTTP (``s3``, ``rest``) share, written once: a
load's span checked and turned into a ``Range`` header, and the listing of the one config object.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import NotFoundError, UsageError
from .base import FileType, Handle, Store

EMPTY = ""  # a span of no bytes: nothing to fetch (the caller still checks the object exists)


def byte_range(h: Handle, offset: int, length: int | None) -> str | None:
    """The ``Range`` of ``load(h, offset, length)``: ``bytes=A-B`` or ``bytes=A-``, None for the
    whole object, ``EMPTY`` for no bytes; a negative offset or length is the caller's mistake."""
    if offset < 0 or (length is not None and length < 0):
        raise UsageError(f"{h}: negative offset or length ({offset}, {length})")
    if length == 0:
        return EMPTY
    if length is not None:
        return f"bytes={offset}-{offset + length - 1}"
    return f"bytes={offset}-" if offset else None


def list_config(store: Store) -> Iterator[tuple[str, int]]:
    """``list(FileType.CONFIG)`` of a store whose config is one object: its size, or nothing."""
    try:
        size = store.stat(Handle(FileType.CONFIG))
    except NotFoundError:
        return
    yield "config", size


__all__ = ["EMPTY", "byte_range", "list_config"]
