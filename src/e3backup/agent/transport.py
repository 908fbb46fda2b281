"""How the agent's requests reach the server: one method, ``request``.

``HttpxTransport`` sends them with an ``httpx.Client``: over the network (``network(url)``) or
into the app in-process (pass a ``fastapi.testclient.TestClient``, itself an httpx client, as
the tests do). Network failures surface as ``TransportError``; what an answer means is the
client's business (``client.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from ..errors import E3Error


class TransportError(E3Error):
    """The request did not get an answer (connection refused, reset, timeout, DNS)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: Any  # decoded JSON, or the text when the body is not JSON


class Transport(Protocol):
    def request(self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None,
                params: dict[str, Any] | None = None) -> Response:
        """Send one request and return the answer; raise ``TransportError`` when there is none."""
        ...

    def close(self) -> None: ...


class HttpxTransport:
    def __init__(self, client: httpx.Client, owned: bool = False) -> None:
        self.client = client
        self._owned = owned

    @classmethod
    def network(cls, base_url: str, timeout: float = 30.0, verify: bool | str = True) -> HttpxTransport:
        return cls(httpx.Client(base_url=base_url, timeout=timeout, verify=verify), owned=True)

    def request(self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None,
                params: dict[str, Any] | None = None) -> Response:
        try:
            r = self.client.request(method, path, json=json, headers=headers, params=params)
        except httpx.TransportError as e:
            raise TransportError(f"{method} {path}: {type(e).__name__}: {e}") from None
        try:
            body: Any = r.json()
        except ValueError:
            body = r.text
        return Response(r.status_code, body)

    def download(self, path: str, dest: Path, headers: dict[str, str] | None = None) -> None:
        """GET a file into ``dest`` (streamed); an answer other than 200 is a ``TransportError``."""
        try:
            with self.client.stream("GET", path, headers=headers, timeout=300) as r:
                if r.status_code != 200:
                    raise TransportError(f"GET {path}: server answered {r.status_code}")
                with open(dest, "wb") as f:
                    for chunk in r.iter_bytes(1 << 20):
                        f.write(chunk)
        except httpx.TransportError as e:
            raise TransportError(f"GET {path}: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        if self._owned:
            self.client.close()


__all__ = ["HttpxTransport", "Response", "Transport", "TransportError"]
