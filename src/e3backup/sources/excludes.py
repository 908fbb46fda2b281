"""Exclude patterns, restic style: a pattern with a ``/`` matches the whole path, any other
pattern matches a single path component. ``*`` stays within a component, ``**`` spans several."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from functools import lru_cache

from ..errors import UsageError


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    parts = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        else:
            j = i
            while j < len(pattern) and not pattern.startswith("**", j):
                j += 1
            parts.append(fnmatch.translate(pattern[i:j])[4:-3].replace(".*", "[^/]*"))
            i = j
    return re.compile("(?s:" + "".join(parts) + r")\Z")


class Excluder:
    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns = [p.strip() for p in patterns if p.strip() and not p.strip().startswith("#")]
        for p in self.patterns:
            try:
                _compile(p.rstrip("/"))
            except re.error as e:
                raise UsageError(f"invalid exclude pattern {p!r}: {e}") from e

    @classmethod
    def from_options(cls, patterns: Iterable[str], files: Iterable[str]) -> Excluder:
        all_patterns = list(patterns)
        for f in files:
            try:
                with open(f, encoding="utf-8") as fh:
                    all_patterns.extend(fh.read().splitlines())
            except OSError as e:
                raise UsageError(f"cannot read exclude file {f}: {e.strerror}") from e
        return cls(all_patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excluded(self, path: str) -> bool:
        """``path`` is absolute, with ``/`` separators."""
        for p in self.patterns:
            pat = p.rstrip("/")
            if "/" in pat:
                rx = _compile(pat if pat.startswith("/") else "**/" + pat)
                if rx.match(path) or any(rx.match(path[:i]) for i in _prefix_ends(path)):
                    return True
            else:
                rx = _compile(pat)
                if any(rx.match(c) for c in path.split("/") if c):
                    return True
        return False


def _prefix_ends(path: str) -> list[int]:
    return [i for i, ch in enumerate(path) if ch == "/" and i > 0]


__all__ = ["Excluder"]
