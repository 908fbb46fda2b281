"""The storage preflight against real causes on loopback, one per event code."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from e3backup.errors import UsageError
from e3backup.events import EventCode
from e3backup.storage import probe
from e3backup.storage.probe import parse_target
from tests.plugins.faultproxy import FaultProxy
from tests.plugins.seaweedfs import SeaweedServer
from tests.plugins.tls import self_signed_cert, server_context

BLOCK_PAGE = (b"<!DOCTYPE html><html><head><title>Access Blocked - Corporate Web Filter</title>"
              b"</head><body>This site is blocked by policy.</body></html>")


@contextlib.contextmanager
def _serve(status: int, ctype: str, body: bytes,
           tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """A loopback HTTP(S) server answering every GET the same way; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_unresolvable_name_is_dns_failed() -> None:
    r = probe("s3:https://e3backup-probe.invalid/bucket", timeout=5)
    assert r.code is EventCode.STORAGE_DNS_FAILED
    assert "e3backup-probe.invalid does not resolve" in r.message
    assert not r.ok and r.details["host"] == "e3backup-probe.invalid"


def test_closed_port_is_tcp_refused() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # bound then closed: nothing listens there
    r = probe(f"http://127.0.0.1:{port}", timeout=5)
    assert r.code is EventCode.STORAGE_TCP_REFUSED
    assert f"127.0.0.1:{port} refused the connection" in r.message


def test_dropped_syns_are_tcp_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=5)  # fills the accept queue
    try:
        r = probe(f"http://127.0.0.1:{port}", timeout=0.3)
    finally:
        filler.close()
        listener.close()
    assert r.code is EventCode.STORAGE_TCP_TIMEOUT
    assert "no answer" in r.message and str(port) in r.message


def test_untrusted_self_signed_certificate_is_tls_failed(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    xml = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>"
    with _serve(403, "application/xml", xml, tls=server_context(cert, key)) as url:
        r = probe(url, timeout=5)
        assert r.code is EventCode.STORAGE_TLS_FAILED
        assert "certificate not trusted" in r.message
        trusted = probe(url, timeout=5, ca_bundle=str(cert))
        assert trusted.code is EventCode.STORAGE_OK, trusted.message
        assert trusted.details["tls_version"].startswith("TLS")
        assert probe(url, timeout=5, insecure_tls=True).ok


def test_plain_http_to_a_tls_port_is_tls_failed() -> None:
    # the reverse mistake: https:// to a server speaking plain HTTP
    with _serve(200, "application/xml", b"<ok/>") as url:
        r = probe(url.replace("http://", "https://"), timeout=5)
        assert r.code is EventCode.STORAGE_TLS_FAILED


def test_html_block_page_is_http_blocked() -> None:
    with _serve(403, "text/html; charset=utf-8", BLOCK_PAGE) as url:
        r = probe(f"s3:{url}/bucket/prefix", timeout=5)
        assert r.code is EventCode.STORAGE_HTTP_BLOCKED
        assert "Corporate Web Filter" in r.message and "HTTP 403" in r.message
        assert r.details["http_status"] == 403


def test_captive_portal_and_proxy_auth_are_http_blocked() -> None:
    with _serve(200, "text/html", b"<html><title>Hotel WiFi login</title></html>") as url:
        assert probe(url, timeout=5).code is EventCode.STORAGE_HTTP_BLOCKED
    with _serve(407, "text/plain", b"auth required") as url:
        r = probe(url, timeout=5)
        assert r.code is EventCode.STORAGE_HTTP_BLOCKED and "authentication" in r.message


def test_gateway_error_page_is_endpoint_unreachable() -> None:
    with _serve(502, "text/html", b"<html><title>502 Bad Gateway</title></html>") as url:
        r = probe(url, timeout=5)
        assert r.code is EventCode.STORAGE_ENDPOINT_UNREACHABLE
        assert "502" in r.message


def test_silent_listener_is_endpoint_unreachable() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)  # the kernel accepts; nobody ever answers
    try:
        r = probe(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.3)
    finally:
        listener.close()
    assert r.code is EventCode.STORAGE_ENDPOINT_UNREACHABLE
    assert "no HTTP answer" in r.message


def test_s3_access_denied_xml_is_ok(s3_server: SeaweedServer) -> None:
    r = probe(s3_server.url("anybucket", "prefix"), timeout=5)
    assert r.code is EventCode.STORAGE_OK, r.message
    assert r.details["http_status"] == 403, "anonymous S3 answers 403 AccessDenied in XML"
    assert "S3" in r.message
    assert r.to_json()["code"] == "STORAGE_OK" and r.to_json()["ok"] is True


def test_s3_behind_self_signed_tls(s3_server: SeaweedServer, tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    proxy = FaultProxy(("127.0.0.1", s3_server.port), tls=server_context(cert, key))
    try:
        assert probe(proxy.url("bk"), timeout=5).code is EventCode.STORAGE_TLS_FAILED
        assert probe(proxy.url("bk"), timeout=5, ca_bundle=str(cert)).ok
    finally:
        proxy.close()


@pytest.mark.parametrize(("given", "scheme", "host", "port"), [
    ("s3:http://127.0.0.1:8333/bk/p", "http", "127.0.0.1", 8333),
    ("https://s3.example.com", "https", "s3.example.com", 443),
    ("s3.example.com", "https", "s3.example.com", 443),
    ("http://[::1]/x", "http", "::1", 80),
])
def test_parse_target(given: str, scheme: str, host: str, port: int) -> None:
    t = parse_target(given)
    assert (t.scheme, t.host, t.port) == (scheme, host, port)


@pytest.mark.parametrize("bad", ["ftp://host", "http://", "http://host:99999"])
def test_bad_targets_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError, match="cannot probe"):
        probe(bad, timeout=1)


def test_timeout_must_be_positive() -> None:
    with pytest.raises(UsageError, match="timeout must be positive"):
        probe("http://127.0.0.1:9", timeout=0)
