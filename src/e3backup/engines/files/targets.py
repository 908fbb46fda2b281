"""Lay the backup targets out in the snapshot tree as restic does.

An absolute target keeps every component from ``/`` (``/home/a/src`` → ``home/a/src``); a
relative one keeps its components without leading ``..`` (``../../b`` → ``b``); ``.`` puts the
directory's contents at the root. Intermediate directories are real directories whose metadata
is stored too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ...errors import UsageError


@dataclass
class VirtualDir:
    """A directory of the snapshot tree that is not itself a target (or the root)."""

    fs_path: bytes | None  # the real directory whose metadata the node carries (None: root)
    children: dict[bytes, VirtualDir | bytes] = field(default_factory=dict)  # name -> dir or target path
    contents_of: bytes | None = None  # a target whose contents fill this directory (``.``)


def components(target: bytes) -> tuple[bytes, list[bytes]]:
    """``(prefix, comps)``: the real path of the first component's parent and the components."""
    p = os.path.normpath(target)
    if p.startswith(b"/"):
        return b"/", [c for c in p.split(b"/") if c]
    parts = [c for c in p.split(b"/") if c and c != b"."]
    ups = 0
    while ups < len(parts) and parts[ups] == b"..":
        ups += 1
    prefix = b"/".join([b".."] * ups) if ups else b"."
    return prefix, parts[ups:]


def build(targets: list[bytes]) -> VirtualDir:
    root = VirtualDir(None)
    for t in targets:
        prefix, comps = components(t)
        real = os.path.normpath(t)
        if not comps:
            if root.contents_of is not None or root.children:
                raise UsageError(f"cannot combine {t.decode(errors='replace')!r} with other targets")
            root.contents_of = real
            continue
        if root.contents_of is not None:
            raise UsageError(f"cannot combine {t.decode(errors='replace')!r} with other targets")
        cur = root
        path = prefix
        for c in comps[:-1]:
            path = c if path == b"." else (path + c if path.endswith(b"/") else path + b"/" + c)
            nxt = cur.children.get(c)
            if nxt is None:
                nxt = cur.children[c] = VirtualDir(path)
            elif not isinstance(nxt, VirtualDir):
                break  # an enclosing target already covers this one
            cur = nxt
        else:
            last = comps[-1]
            existing = cur.children.get(last)
            if existing is not None and existing != real:
                if isinstance(existing, VirtualDir):
                    cur.children[last] = real  # the target covers what was below it
                else:
                    raise UsageError(
                        f"targets {existing.decode(errors='replace')!r} and {t.decode(errors='replace')!r} "
                        "have the same name in the snapshot"
                    )
            else:
                cur.children[last] = real
    return root


__all__ = ["VirtualDir", "build", "components"]
