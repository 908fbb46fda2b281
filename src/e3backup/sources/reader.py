"""Reading planned ranges robustly: retries, then sector-level recovery or a hard failure.

Best effort (the default): a failing span is retried ``retries`` times; if it still fails it is
split in halves down to the logical sector size, every unreadable sector is zero-filled, and one
``DISK_IMAGE_READ_RECOVERED`` event is emitted per contiguous unreadable span of that read, with
its offset and length. Strict (policy ``disk_image_strict_read_errors``, environment
``AGENT_DISK_IMAGE_STRICT_READ_ERRORS``): the first read error raises ``ReadError``, which the
engine reports as ``DISK_IMAGE_FAILED``. Reads never extend past the device end (callers clamp to
the plan, which is clamped to the device), so a short read is an error, not EOF. No sleeping
between retries: a failing sector fails fast, and a transient one usually succeeds at once.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from e3backup.events import Event, EventCode
from e3backup.sources.errors import ReadError
from e3backup.sources.extents import Extent, ExtentList

STRICT_POLICY_KEY = "disk_image_strict_read_errors"
STRICT_ENV = "AGENT_DISK_IMAGE_STRICT_READ_ERRORS"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class ReadableDevice(Protocol):
    path: str
    sector_size: int

    @property
    def size(self) -> int: ...

    def read_into(self, offset: int, buf: bytearray | memoryview) -> int: ...


@runtime_checkable
class UncachedReads(Protocol):
    """A device that can read past the page cache: recovery uses it to find the exact bad
    sectors (a cached read fails for the whole readahead window around one)."""

    def read_uncached(self, offset: int, buf: bytearray | memoryview) -> int: ...


@dataclass(frozen=True)
class ReadPolicy:
    strict: bool = False
    retries: int = 2
    """Extra attempts for a failing span (and for each sector) before giving up on it."""


def _flag(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name}: expected a boolean (1/0/true/false), got {value!r}")


def resolve_strict_read_errors(policy: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Strict mode from the job policy; the environment variable is the fallback when the policy
    does not set it (the seeds' rule). Unset everywhere: best effort."""
    value = (policy or {}).get(STRICT_POLICY_KEY)
    if value is not None:
        return _flag(value, STRICT_POLICY_KEY)
    environ = os.environ if env is None else env
    raw = environ.get(STRICT_ENV)
    if raw is not None and raw.strip():
        return _flag(raw, STRICT_ENV)
    return False


class DeviceReader:
    """Fills caller-owned buffers from a device under a read-error policy. Thread-safe."""

    def __init__(
        self,
        device: ReadableDevice,
        policy: ReadPolicy | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.device = device
        self.policy = policy or ReadPolicy()
        self._emit = on_event or (lambda _e: None)
        self._lock = threading.Lock()
        self._recovered: list[Extent] = []

    @property
    def recovered(self) -> ExtentList:
        """Every span zero-filled so far."""
        with self._lock:
            return ExtentList(self._recovered)

    def read_into(self, offset: int, buf: bytearray | memoryview) -> None:
        """Fill ``buf`` with the bytes at ``offset``; it must lie inside the device."""
        view = memoryview(buf).cast("B")
        if offset < 0 or offset + len(view) > self.device.size:
            raise ValueError(
                f"read of {len(view)} bytes at {offset} is outside {self.device.path} "
                f"({self.device.size} bytes): clamp reads to the plan"
            )
        error = self._attempt(offset, view, 1 + self.policy.retries)
        if error is None:
            return
        if self.policy.strict:
            raise ReadError(self.device.path, offset, len(view), str(error)) from error
        bad = ExtentList(self._recover(offset, view))
        with self._lock:
            self._recovered.extend(bad)
        for span in bad:
            self._emit(
                Event(
                    EventCode.DISK_IMAGE_READ_RECOVERED,
                    f"zero-filled {span.length} unreadable bytes at offset {span.offset} of {self.device.path}",
                    details={
                        "device": self.device.path,
                        "offset": span.offset,
                        "length": span.length,
                        "error": str(error),
                    },
                )
            )

    def _attempt(self, offset: int, view: memoryview, tries: int, uncached: bool = False) -> OSError | None:
        read = self.device.read_uncached if uncached and isinstance(self.device, UncachedReads) else None
        error: OSError | None = None
        for _ in range(tries):
            try:
                n = read(offset, view) if read else self.device.read_into(offset, view)
            except OSError as e:
                error = e
                continue
            if n == len(view):
                return None
            error = OSError(errno.EIO, f"short read: {n} of {len(view)} bytes (device shrank?)")
        return error

    def _recover(self, offset: int, view: memoryview) -> list[tuple[int, int]]:
        """Bisect a failing span past the page cache; zero-fill the sectors that still fail.
        Returns them."""
        sector = max(1, self.device.sector_size)
        bad: list[tuple[int, int]] = []
        stack = [(offset, view)]
        while stack:
            off, part = stack.pop()
            if len(part) <= sector:
                if self._attempt(off, part, 1 + self.policy.retries, uncached=True) is not None:
                    part[:] = bytes(len(part))
                    bad.append((off, len(part)))
                continue
            split = (off + len(part) // 2) // sector * sector
            if not off < split < off + len(part):
                split = off + len(part) // 2
            left, right = part[: split - off], part[split - off :]
            for sub_off, sub in ((split, right), (off, left)):  # popped left first
                if self._attempt(sub_off, sub, 1, uncached=True) is not None:
                    stack.append((sub_off, sub))
        return bad


__all__ = ["STRICT_ENV", "STRICT_POLICY_KEY", "DeviceReader", "ReadPolicy", "resolve_strict_read_errors"]
