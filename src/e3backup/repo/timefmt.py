"""RFC 3339 times with nanoseconds, written and read as restic does (spec section 7.7).

Times are integer nanoseconds since the Epoch: ``datetime`` only holds microseconds. Every node
has three times, so both directions have a fast path for the common UTC form.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import date, datetime
from functools import lru_cache

from ..errors import IntegrityError

_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$")
_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()


@lru_cache(maxsize=65536)
def _civil(sec: int) -> str:
    days, rem = divmod(sec, 86400)
    d = date.fromordinal(days + _EPOCH_ORDINAL)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{h:02d}:{m:02d}:{s:02d}"


def format_ns(ns: int, offset_s: int = 0) -> str:
    """Format nanoseconds since the epoch; ``offset_s`` is the zone offset in seconds."""
    sec, frac = divmod(ns, 1_000_000_000)
    s = _civil(sec + offset_s)
    if frac:
        s += "." + f"{frac:09d}".rstrip("0")
    if offset_s == 0:
        return s + "Z"
    sign = "+" if offset_s > 0 else "-"
    m = abs(offset_s) // 60
    return f"{s}{sign}{m // 60:02d}:{m % 60:02d}"


def _civil_seconds(prefix: str) -> int:
    try:
        dt = datetime.fromisoformat(prefix)
    except ValueError as e:
        raise IntegrityError(f"invalid time {prefix!r}") from e
    return (dt.toordinal() - _EPOCH_ORDINAL) * 86400 + dt.hour * 3600 + dt.minute * 60 + dt.second


def parse_ns(s: str) -> int:
    """Parse an RFC 3339 time into nanoseconds since the epoch (fraction truncated to ns)."""
    if len(s) >= 20 and s[-1] == "Z" and s[4] == "-" and s[10] == "T" and s[13] == ":":
        # the common case (UTC, as restic and we write it), without the regex
        secs = _civil_seconds(s[:19])
        if len(s) == 20:
            return secs * 1_000_000_000
        frac = s[20:-1]
        if s[19] == "." and frac.isdigit() and frac.isascii():
            return secs * 1_000_000_000 + int(frac[:9].ljust(9, "0"))
    m = _RE.match(s)
    if not m:
        raise IntegrityError(f"invalid time {s!r}")
    y, mo, d, h, mi, se, frac_s, zone = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(se), 0, 0, 0))
    if zone != "Z":
        off = (int(zone[1:3]) * 60 + int(zone[4:6])) * 60
        secs -= off if zone[0] == "+" else -off
    return secs * 1_000_000_000 + int((frac_s or "")[:9].ljust(9, "0"))


def now_ns() -> int:
    return time.time_ns()


__all__ = ["format_ns", "now_ns", "parse_ns"]
