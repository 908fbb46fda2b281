"""Blob types and handles (spec section 8): a blob is identified by (type, SHA-256 of plaintext)."""

from __future__ import annotations

from enum import IntEnum


class BlobType(IntEnum):
    DATA = 0
    TREE = 1

    @property
    def json_name(self) -> str:
        return "data" if self is BlobType.DATA else "tree"

    @classmethod
    def from_json(cls, name: str) -> BlobType:
        if name == "data":
            return cls.DATA
        if name == "tree":
            return cls.TREE
        raise ValueError(f"invalid blob type {name!r}")


__all__ = ["BlobType"]
