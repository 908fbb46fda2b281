"""Tree blobs: ``{"nodes":[...]}\\n`` with nodes sorted by raw name bytes (spec 7.2)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable

from ..errors import IntegrityError
from .node import Node


def encode_tree(nodes: Iterable[Node]) -> bytes:
    """Tree JSON bytes; refuses duplicate names. The tree ID is the SHA-256 of these bytes."""
    ordered = sorted(nodes, key=lambda n: n.name)
    for a, b in itertools.pairwise(ordered):
        if a.name == b.name:
            raise IntegrityError(f"duplicate name {a.display_name!r} in tree")
    return ('{"nodes":[' + ",".join([n.json_text() for n in ordered]) + "]}\n").encode("utf-8")


def decode_tree(data: bytes, tree_id: str = "") -> list[Node]:
    try:
        doc = json.loads(data)
        nodes = doc["nodes"] or []
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"tree {tree_id}: invalid JSON: {e}") from e
    return [Node.from_json(n) for n in nodes]


__all__ = ["decode_tree", "encode_tree"]
