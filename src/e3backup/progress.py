"""Progress of long work: counters updated by workers, reported at a bounded rate.

Reporters: a one-line bar on a terminal (rate, ETA, current item), JSON status lines
(``{"message_type": "status", ...}``, as restic's ``--json``), or a callback (the agent feeds
the server with it). A reporter thread samples the counters; workers never block on output.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass
class Counters:
    files_total: int = 0
    bytes_total: int = 0
    scan_done: bool = False
    files_done: int = 0
    bytes_done: int = 0
    errors: int = 0
    current: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Progress:
    """Thread-safe counters plus a periodic reporter; use as a context manager."""

    def __init__(
        self,
        mode: str = "auto",  # "auto" (bar on a tty), "json", "quiet"
        interval: float | None = None,
        callback: Callable[[dict[str, Any]], None] | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.c = Counters()
        self.lock = threading.Lock()
        self.out = out or sys.stderr
        if mode == "auto":
            mode = "bar" if self.out.isatty() else "quiet"
        self.mode = mode
        self.interval = interval if interval is not None else (1.0 if mode == "json" else 0.2)
        self.callback = callback
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_line = 0

    def add(self, files: int = 0, nbytes: int = 0, current: str | None = None) -> None:
        with self.lock:
            self.c.files_done += files
            self.c.bytes_done += nbytes
            if current is not None:
                self.c.current = current

    def set_total(self, nbytes: int, files: int = 0) -> None:
        """Known totals up front (an image backup: the device size); the scan is then done."""
        with self.lock:
            self.c.bytes_total, self.c.files_total, self.c.scan_done = nbytes, files, True

    def set_scan(self, files: int, nbytes: int, done: bool = False) -> None:
        """Totals found so far by a scan running beside the work; ``done`` once it finished."""
        with self.lock:
            self.c.files_total, self.c.bytes_total = files, nbytes
            if done:
                self.c.scan_done = True

    def add_error(self, n: int = 1) -> None:
        with self.lock:
            self.c.errors += n

    def set_stage(self, stage: str, done: int, total: int) -> None:
        """A run made of stages (maintenance: forget, prune, check): shown as the current item."""
        with self.lock:
            self.c.extra.update({"stage": stage, "stage_done": done, "stage_total": total})
            self.c.current = stage

    @property
    def bytes_done(self) -> int:
        with self.lock:
            return self.c.bytes_done

    def set_extra(self, **values: Any) -> None:
        """Engine-specific fields carried in every status line (e.g. ``plan_bytes``, ``bytes_read``)."""
        with self.lock:
            self.c.extra.update(values)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            c = self.c
            elapsed = max(time.monotonic() - self.start, 1e-9)
            rate = c.bytes_done / elapsed
            total = max(c.bytes_total, c.bytes_done)
            pct = c.bytes_done / total if total else (1.0 if c.scan_done else 0.0)
            eta = (total - c.bytes_done) / rate if c.scan_done and rate > 0 else None
            return {
                "message_type": "status",
                "percent_done": round(min(pct, 1.0), 4),
                "total_files": c.files_total,
                "files_done": c.files_done,
                "total_bytes": c.bytes_total,
                "bytes_done": c.bytes_done,
                "bytes_per_second": int(rate),
                "seconds_elapsed": int(elapsed),
                "seconds_remaining": int(eta) if eta is not None else None,
                "error_count": c.errors,
                "current_files": [c.current] if c.current else [],
                **c.extra,
            }

    def report(self) -> None:
        s = self.snapshot()
        if self.callback is not None:
            self.callback(s)
        if self.mode == "json":
            self.out.write(json.dumps(s) + "\n")
            self.out.flush()
        elif self.mode == "bar":
            line = _bar(s)
            width = 200
            self.out.write("\r" + line[:width].ljust(self._last_line))
            self._last_line = min(len(line), width)
            self.out.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.report()

    def __enter__(self) -> Progress:
        if self.mode != "quiet" or self.callback is not None:
            self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.report()
            if self.mode == "bar":
                self.out.write("\n")
                self.out.flush()


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _bar(s: dict[str, Any]) -> str:
    pct = s["percent_done"] * 100
    filled = int(pct / 5)
    eta = s["seconds_remaining"]
    eta_s = f"ETA {eta // 60}:{eta % 60:02d}" if eta is not None else "ETA --:--"
    files = f"{s['files_done']}/{s['total_files']} files" if s["total_files"] else ""
    cur = s["current_files"][0] if s["current_files"] else ""
    return (
        f"[{'#' * filled}{'.' * (20 - filled)}] {pct:5.1f}% {files} "
        f"{_fmt_bytes(s['bytes_done'])}/{_fmt_bytes(s['total_bytes'])} "
        f"{_fmt_bytes(s['bytes_per_second'])}/s {eta_s} {cur[-60:]}"
    )


__all__ = ["Counters", "Progress"]
