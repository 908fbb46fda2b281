"""How the dashboard writes numbers and times: binary byte units, speeds, durations, UTC times.

The same functions feed the templates (as Jinja filters) and the live-progress payload, so a
value reads the same before and after the page updates itself.
"""

from __future__ import annotations

from datetime import UTC, datetime

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: float | None) -> str:
    """``1536`` -> ``1.5 KiB``; None -> an em dash."""
    if n is None:
        return "—"
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def speed(bytes_per_sec: float | None) -> str:
    return "—" if bytes_per_sec is None else f"{size(bytes_per_sec)}/s"


def duration(seconds: float | None) -> str:
    """``3725`` -> ``1 h 02 min``; ``42`` -> ``42 s``."""
    if seconds is None:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    minutes, s = divmod(s, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def when(ts: datetime | None) -> str:
    """An absolute time in UTC, to the minute (the tooltip and the list columns)."""
    if ts is None:
        return "—"
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def ns_when(ns: int | None) -> str:
    """A snapshot node's time (nanoseconds since the epoch), like :func:`when`."""
    if not ns:
        return "—"
    return when(datetime.fromtimestamp(ns / 1e9, UTC))


def ago(ts: datetime | None, now: datetime) -> str:
    if ts is None:
        return "never"
    seconds = (now - ts).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def percent(pct: float | None) -> str:
    return "—" if pct is None else f"{pct:.0f} %"


__all__ = ["ago", "duration", "ns_when", "percent", "size", "speed", "when"]
