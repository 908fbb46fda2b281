"""``e3backup storage probe`` and the reusable ``@s3_options``."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

from e3backup.cli.storage_cmd import storage
from e3backup.cli.storage_options import s3_options
from e3backup.store import open_store
from e3backup.store.limiter import LimitedStore
from e3backup.store.s3 import S3Store
from tests.plugins.seaweedfs import SeaweedServer


def test_probe_ok_prints_one_line_and_exits_0(s3_server: SeaweedServer) -> None:
    result = CliRunner().invoke(storage, ["probe", s3_server.url("bk"), "--timeout", "5"])
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1
    assert result.output.startswith("STORAGE_OK: 127.0.0.1:")


def test_probe_failure_exits_1_with_json() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    result = CliRunner().invoke(storage, ["probe", f"s3:http://127.0.0.1:{port}/bk", "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["code"] == "STORAGE_TCP_REFUSED" and doc["ok"] is False
    assert "refused" in doc["message"] and doc["meaning"].startswith("The storage host refused")
    assert doc["details"]["port"] == port


def test_probe_bad_url_is_a_usage_error() -> None:
    result = CliRunner().invoke(storage, ["probe", "ftp://example.com"])
    assert result.exit_code == 2
    assert "scheme must be http or https" in result.output


def test_s3_options_build_open_store_options(s3_server: SeaweedServer, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    ca = tmp_path / "ca.pem"
    ca.write_text("not parsed until a TLS connection is made")

    @click.command()
    @click.argument("repo")
    @s3_options
    def cmd(repo: str, store_options: dict[str, Any]) -> None:
        seen.update(store_options)
        store = open_store(repo, **store_options, **s3_server.store_options())
        assert isinstance(store, LimitedStore) and isinstance(store.inner, S3Store)
        assert store.inner.upload_connections == 12 and store.inner.region == "eu-west-2"

    args = [s3_server.url("bk"), "--upload-connections", "12", "--limit-upload", "2048",
            "--region", "eu-west-2", "--ca-bundle", str(ca)]
    result = CliRunner().invoke(cmd, args)
    assert result.exit_code == 0, result.output
    assert seen == {"upload_connections": 12, "limit_upload": 2048.0, "region": "eu-west-2",
                    "ca_bundle": str(ca)}

    seen.clear()
    result = CliRunner().invoke(cmd, [s3_server.url("bk"), "--upload-connections", "0"])
    assert result.exit_code == 2 and "--upload-connections" in result.output
    result = CliRunner().invoke(cmd, ["--help"])
    for flag in ("--upload-connections", "--limit-upload", "--limit-download", "--insecure-tls",
                 "--ca-bundle", "--region"):
        assert flag in result.output
