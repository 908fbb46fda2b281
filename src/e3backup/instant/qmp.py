"""A minimal QMP client (QEMU's JSON machine protocol) over a unix socket: the few commands the
VM handle needs (``screendump``, ``query-status``, ``quit``). Asynchronous events are skipped."""

from __future__ import annotations

import json
import threading
from typing import Any

from ..errors import E3Error
from ..platform.compat import unix_socket


class QmpError(E3Error):
    """QEMU refused a command or its monitor went away."""


class Qmp:
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self._sock = unix_socket("QEMU's monitor (QMP)")
        self._sock.settimeout(timeout)
        self._sock.connect(path)
        self._file = self._sock.makefile("rb")
        self._mu = threading.Lock()
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise QmpError("QEMU's monitor closed the connection (the VM has stopped)")
        msg: dict[str, Any] = json.loads(line)
        return msg

    def execute(self, command: str, **arguments: Any) -> Any:
        with self._mu:
            req: dict[str, Any] = {"execute": command}
            if arguments:
                req["arguments"] = arguments
            try:
                self._sock.sendall(json.dumps(req).encode() + b"\n")
                while True:
                    msg = self._read()
                    if "event" in msg:
                        continue
                    if "error" in msg:
                        raise QmpError(f"QEMU refused {command}: {msg['error'].get('desc', msg['error'])}")
                    return msg.get("return")
            except (OSError, ValueError) as e:
                raise QmpError(f"QEMU's monitor failed during {command}: {e}") from e

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._sock.close()


__all__ = ["Qmp", "QmpError"]
