"""RFC 3339 times with nanoseconds, written and read as restic does (spec section 7.7).

Times are integer nanoseconds since the Unix epoch: ``datetime`` only holds microseconds.
"""

from __future__ import annotations

import calendar
import re
import time

from ..errors import IntegrityError

_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$")


def format_ns(ns: int, offset_s: int = 0) -> str:
    """Format nanoseconds since the epoch; ``offset_s`` is the zone offset in seconds."""
    sec, frac = divmod(ns, 1_000_000_000)
    t = time.gmtime(sec + offset_s)
    s = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    if frac:
        s += "." + f"{frac:09d}".rstrip("0")
    if offset_s == 0:
        return s + "Z"
    sign = "+" if offset_s > 0 else "-"
    m = abs(offset_s) // 60
    return f"{s}{sign}{m // 60:02d}:{m % 60:02d}"


def parse_ns(s: str) -> int:
    """Parse an RFC 3339 time into nanoseconds since the epoch (fraction truncated to ns)."""
    m = _RE.match(s)
    if not m:
        raise IntegrityError(f"invalid time {s!r}")
    y, mo, d, h, mi, se, frac, zone = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(se), 0, 0, 0))
    if zone != "Z":
        off = (int(zone[1:3]) * 60 + int(zone[4:6])) * 60
        secs -= off if zone[0] == "+" else -off
    ns = int((frac or "")[:9].ljust(9, "0"))
    return secs * 1_000_000_000 + ns


def now_ns() -> int:
    return time.time_ns()


__all__ = ["format_ns", "now_ns", "parse_ns"]
