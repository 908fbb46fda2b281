"""Storage preflight: can this machine reach the S3 endpoint, and if not, where does it break?

The agent runs ``probe`` before opening a repository, so a failed backup says "DNS", "refused",
"firewall drops it", "TLS" or "a web filter blocks it" instead of a retry storm ending in a
timeout. The stages run in order and the first failure decides the code:

    DNS   getaddrinfo                       -> STORAGE_DNS_FAILED
    TCP   connect to each address           -> STORAGE_TCP_REFUSED / STORAGE_TCP_TIMEOUT
                                               (other socket errors: STORAGE_ENDPOINT_UNREACHABLE)
    TLS   handshake, certificate checked    -> STORAGE_TLS_FAILED            (https only)
    HTTP  anonymous GET /                   -> STORAGE_HTTP_BLOCKED for an HTML block page,
                                               a captive portal or proxy authentication;
                                               STORAGE_ENDPOINT_UNREACHABLE for no answer or 5xx
          else                              -> STORAGE_OK

An S3 endpoint answers an anonymous request with an XML error (403 AccessDenied): that is a
healthy endpoint, not a block. A filter's block page is HTML. No credentials are sent.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..errors import UsageError
from ..events import CODES, EventCode

DEFAULT_TIMEOUT = 10.0
_MAX_BODY = 64 * 1024
_TITLE_RE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class ProbeResult:
    """The outcome: an event code, one human line, and facts for the event's details."""

    code: EventCode
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code is EventCode.STORAGE_OK

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code.value, "ok": self.ok, "message": self.message,
                "meaning": CODES[self.code].meaning, "details": self.details}


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str = "/"

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_target(url_or_endpoint: str) -> _Target:
    """Accept ``s3:http(s)://host[:port]/bucket``, ``http(s)://host[:port]`` or ``host[:port]``;
    ``rest:http(s)://host[:port]/path/`` (a REST repository, the repository gateway) is probed at
    its own path, which answers without credentials (401), where ``/`` may be a web page."""
    text = url_or_endpoint.strip()
    path = "/"
    if text.startswith("rest:"):
        text = text[5:]
        path = urlsplit(text).path or "/"
    if text.startswith("s3:"):
        text = text[3:]
    if text.startswith("//"):
        text = "https:" + text
    elif "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise UsageError(f"cannot probe {url_or_endpoint!r}: {e}") from e
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"cannot probe {url_or_endpoint!r}: scheme must be http or https")
    if not parts.hostname:
        raise UsageError(f"cannot probe {url_or_endpoint!r}: no host name")
    return _Target(parts.scheme, parts.hostname,
                   port if port is not None else (443 if parts.scheme == "https" else 80), path)


def probe(
    url_or_endpoint: str,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    ca_bundle: str | None = None,
    insecure_tls: bool = False,
) -> ProbeResult:
    """Check DNS, TCP, TLS and HTTP in order; ``timeout`` bounds each stage."""
    if timeout <= 0:
        raise UsageError(f"probe timeout must be positive, not {timeout}")
    target = parse_target(url_or_endpoint)
    details: dict[str, Any] = {"scheme": target.scheme, "host": target.host, "port": target.port}
    where = f"{target.host}:{target.port}"

    started = time.monotonic()
    addrs, dns_error = _resolve(target, timeout)
    details["dns_ms"] = _ms(started)
    if dns_error is not None:
        return _result(EventCode.STORAGE_DNS_FAILED,
                       f"{target.host} does not resolve: {dns_error}", details)
    details["addresses"] = sorted({a[4][0] for a in addrs})

    started = time.monotonic()
    sock, code, reason = _connect(addrs, timeout)
    details["tcp_ms"] = _ms(started)
    if sock is None:
        assert code is not None
        text = {
            EventCode.STORAGE_TCP_REFUSED: f"{where} refused the connection",
            EventCode.STORAGE_TCP_TIMEOUT: f"no answer from {where} within {timeout:g}s",
        }.get(code, f"cannot connect to {where}")
        return _result(code, f"{text} ({reason})", details)

    try:
        if target.scheme == "https":
            started = time.monotonic()
            try:
                sock = _tls_context(ca_bundle, insecure_tls).wrap_socket(
                    sock, server_hostname=target.host)
            except (ssl.SSLError, ssl.CertificateError, OSError) as e:
                details["tls_ms"] = _ms(started)
                return _result(EventCode.STORAGE_TLS_FAILED,
                               f"TLS handshake with {where} failed: {_tls_reason(e)}", details)
            details["tls_ms"] = _ms(started)
            details["tls_version"] = sock.version()
        started = time.monotonic()
        result = _http_check(sock, target, timeout, details)
        details["http_ms"] = _ms(started)
        return result
    finally:
        sock.close()


def _resolve(target: _Target, timeout: float) -> tuple[list[Any], str | None]:
    """getaddrinfo has no timeout of its own: run it in a daemon thread and stop waiting."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["addrs"] = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError) as e:
            out["error"] = getattr(e, "strerror", None) or str(e)

    t = threading.Thread(target=run, name="probe-dns", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return [], f"no answer from the DNS resolver within {timeout:g}s"
    if "error" in out:
        return [], str(out["error"])
    if not out.get("addrs"):
        return [], "no addresses"
    return list(out["addrs"]), None


def _connect(addrs: list[Any], timeout: float) -> tuple[socket.socket | None, EventCode | None, str]:
    """Try each address; refused wins over timeout (someone is there), both over other errors."""
    outcome: tuple[EventCode, str] | None = None
    rank = {EventCode.STORAGE_TCP_REFUSED: 3, EventCode.STORAGE_TCP_TIMEOUT: 2,
            EventCode.STORAGE_ENDPOINT_UNREACHABLE: 1}
    for family, type_, proto, _, sockaddr in addrs:
        s = socket.socket(family, type_, proto)
        s.settimeout(timeout)
        try:
            s.connect(sockaddr)
            return s, None, ""
        except ConnectionRefusedError:
            this = (EventCode.STORAGE_TCP_REFUSED, f"{sockaddr[0]}: connection refused")
        except TimeoutError:
            this = (EventCode.STORAGE_TCP_TIMEOUT, f"{sockaddr[0]}: connect timed out")
        except OSError as e:
            this = (EventCode.STORAGE_ENDPOINT_UNREACHABLE, f"{sockaddr[0]}: {e.strerror or e}")
        s.close()
        if outcome is None or rank[this[0]] > rank[outcome[0]]:
            outcome = this
    assert outcome is not None
    return None, outcome[0], outcome[1]


def _tls_context(ca_bundle: str | None, insecure_tls: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_bundle)
    if insecure_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _tls_reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({e.verify_message or e.reason})"
    if isinstance(e, TimeoutError):
        return "handshake timed out (something may be intercepting HTTPS)"
    return getattr(e, "reason", None) or str(e) or type(e).__name__


def _http_check(sock: socket.socket, target: _Target, timeout: float,
                details: dict[str, Any]) -> ProbeResult:
    where = f"{target.host}:{target.port}"
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    conn.sock = sock  # reuse the probed connection: the answer comes over the same path
    try:
        conn.putrequest("GET", target.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", target.netloc)
        conn.putheader("User-Agent", "e3backup-probe")
        conn.putheader("Accept", "*/*")
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read(_MAX_BODY)
    except TimeoutError:
        return _result(EventCode.STORAGE_ENDPOINT_UNREACHABLE,
                       f"{where} accepted the connection but sent no HTTP answer within "
                       f"{timeout:g}s", details)
    except (OSError, http.client.HTTPException) as e:
        return _result(EventCode.STORAGE_ENDPOINT_UNREACHABLE,
                       f"{where} dropped the HTTP request ({type(e).__name__}: {e}); a filter "
                       "may be cutting the connection", details)
    finally:
        conn.sock = None  # the caller closes the socket
    ctype = (resp.getheader("Content-Type") or "").lower()
    details.update(http_status=resp.status, content_type=ctype,
                   server=resp.getheader("Server") or "")
    head = body.lstrip()[:200].lower()
    is_s3 = ("xml" in ctype or head.startswith((b"<?xml", b"<error")) or
             any(resp.getheader(h) for h in ("x-amz-request-id", "x-amz-id-2")))
    is_html = "html" in ctype or head.startswith((b"<!doctype html", b"<html"))
    status = f"HTTP {resp.status} {resp.reason}".strip()
    if resp.status == 407:
        return _result(EventCode.STORAGE_HTTP_BLOCKED,
                       f"a proxy between here and {where} wants authentication ({status})", details)
    if is_s3 and not is_html:
        return _result(EventCode.STORAGE_OK, f"{where} answered like an S3 endpoint ({status})",
                       details)
    if is_html:
        m = _TITLE_RE.search(body)
        title = " ".join(m.group(1).decode("utf-8", "replace").split())[:120] if m else ""
        if title:
            details["page_title"] = title
        said = f": {title!r}" if title else ""
        if resp.status >= 500:
            return _result(EventCode.STORAGE_ENDPOINT_UNREACHABLE,
                           f"a gateway answered for {where} with an error page ({status}{said})",
                           details)
        return _result(EventCode.STORAGE_HTTP_BLOCKED,
                       f"{where} answered with an HTML page, not S3 ({status}{said}); a web "
                       "filter or captive portal is probably in the way", details)
    if resp.status >= 500:
        return _result(EventCode.STORAGE_ENDPOINT_UNREACHABLE, f"{where} answered {status}",
                       details)
    return _result(EventCode.STORAGE_OK, f"{where} answered {status}", details)


def _result(code: EventCode, message: str, details: dict[str, Any]) -> ProbeResult:
    return ProbeResult(code, message, dict(details))


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


__all__ = ["DEFAULT_TIMEOUT", "ProbeResult", "parse_target", "probe"]
