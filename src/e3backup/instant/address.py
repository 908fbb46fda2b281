"""`NbdAddress`: where an export listens (``unix:PATH`` or ``tcp:HOST:PORT``); light to import, so
the command line checks an address before it opens the repository."""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass

from ..errors import UsageError
from ..platform.compat import unix_socket


@dataclass(frozen=True)
class NbdAddress:
    """``unix:PATH`` or ``tcp:HOST:PORT`` (port 0: any free port)."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> NbdAddress:
        kind, _, rest = text.partition(":")
        if kind == "unix" and rest:
            return cls("unix", path=rest)
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            host = host.strip("[]")
            if host and port.isdigit() and int(port) < 65536:
                return cls("tcp", host=host, port=int(port))
        raise UsageError(f"NBD address {text!r}: give unix:PATH or tcp:HOST:PORT")

    def listen(self) -> socket.socket:
        if self.kind == "unix":
            _remove_stale_socket(self.path)
            sock = unix_socket("an NBD export on unix:PATH")
            try:
                sock.bind(self.path)
            except OSError as e:
                sock.close()
                raise UsageError(f"cannot listen on unix socket {self.path}: {e.strerror}") from None
        else:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            family = infos[0][0] if infos else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(infos[0][4])
            except OSError as e:
                sock.close()
                raise UsageError(f"cannot listen on {self.host}:{self.port}: {e.strerror}") from None
        sock.listen(16)
        return sock


def _remove_stale_socket(path: str) -> None:
    """A socket nobody listens on (left by a killed server) is removed; anything else is refused."""
    if not os.path.lexists(path):
        return
    if stat.S_ISSOCK(os.lstat(path).st_mode):
        probe = unix_socket("an NBD export on unix:PATH")
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
            return
        except OSError:
            pass
        finally:
            probe.close()
        raise UsageError(f"NBD socket {path} is in use by another server")
    raise UsageError(f"{path} exists and is not a socket: choose another path for the NBD socket")


__all__ = ["NbdAddress"]
