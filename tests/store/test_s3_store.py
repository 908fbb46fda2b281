"""S3-only behaviour against a real SeaweedFS: key layout, bucket creation, credentials, TLS."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from e3backup.errors import NotFoundError, StoreUnavailableError, UsageError
from e3backup.store import FileType, Handle, open_store
from e3backup.store.limiter import LimitedStore
from e3backup.store.retry import RetryPolicy
from e3backup.store.s3 import S3Store
from e3backup.store.s3_location import parse_s3_url
from tests.plugins.faultproxy import FaultProxy
from tests.plugins.seaweedfs import SeaweedServer
from tests.plugins.tls import self_signed_cert, server_context

FAST_FAIL = RetryPolicy(max_attempts=3, max_time=2.0, base_delay=0.01, max_delay=0.05)


def _id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def bucket(s3_server: SeaweedServer) -> str:
    return s3_server.make_bucket()


def _keys(server: SeaweedServer, bucket: str, prefix: str) -> list[str]:
    page = server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in page.get("Contents", ()))


def test_object_keys_follow_restic_layout(s3_server: SeaweedServer, bucket: str) -> None:
    store = open_store(s3_server.url(bucket, "/layout/repo/"), **s3_server.store_options())
    store.create()
    pack, snap = b"pack bytes", b"snapshot bytes"
    store.save(Handle(FileType.CONFIG), b"cfg")
    store.save(Handle(FileType.PACK, _id(pack)), pack)
    store.save(Handle(FileType.SNAPSHOT, _id(snap)), snap)
    assert _keys(s3_server, bucket, "layout/") == sorted([
        "layout/repo/config",
        f"layout/repo/data/{_id(pack)[:2]}/{_id(pack)}",
        f"layout/repo/snapshots/{_id(snap)}",
    ]), "no marker objects, no leading slash, packs under data/<id[:2]>/"
    assert store.location == f"s3:{s3_server.endpoint}/{bucket}/layout/repo"


def test_empty_prefix_puts_keys_at_bucket_root(s3_server: SeaweedServer) -> None:
    bucket = s3_server.make_bucket()
    store = open_store(s3_server.url(bucket), **s3_server.store_options())
    store.save(Handle(FileType.KEY, _id(b"k")), b"k")
    assert _keys(s3_server, bucket, "") == [f"keys/{_id(b'k')}"]


def test_listing_rules_and_pagination(s3_server: SeaweedServer, bucket: str) -> None:
    client = s3_server.client()
    ids = [_id(bytes([i])) for i in range(7)]
    for i in ids:
        client.put_object(Bucket=bucket, Key=f"lst/keys/{i}", Body=b"12345")
        client.put_object(Bucket=bucket, Key=f"lst/data/{i[:2]}/{i}", Body=b"123")
    client.put_object(Bucket=bucket, Key=f"lst/keys/sub/{_id(b'nested')}", Body=b"x")
    client.put_object(Bucket=bucket, Key="lst/keys/README", Body=b"x")
    client.put_object(Bucket=bucket, Key="lst/keysX/" + _id(b"other dir"), Body=b"x")
    store = open_store(s3_server.url(bucket, "lst"), **s3_server.store_options())
    assert isinstance(store, S3Store)
    store.page_size = 3  # force several pages
    assert sorted(store.list(FileType.KEY)) == sorted((i, 5) for i in ids), \
        "keys/ is listed flat: nested and non-ID names are skipped"
    assert sorted(store.list(FileType.PACK)) == sorted((i, 3) for i in ids)


def test_create_makes_missing_bucket_and_tolerates_existing(s3_server: SeaweedServer) -> None:
    name = f"e3new-{os.urandom(4).hex()}"
    store = open_store(s3_server.url(name, "p"), **s3_server.store_options())
    with pytest.raises(NotFoundError, match=f"bucket '{name}' does not exist"):
        list(store.list(FileType.SNAPSHOT))
    store.create()
    store.create()  # already owned by us: fine
    assert name in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert list(store.list(FileType.SNAPSHOT)) == []


def test_create_without_permission_says_so(s3_server: SeaweedServer) -> None:
    name = f"e3denied-{os.urandom(4).hex()}"
    store = open_store(s3_server.url(name), access_key=s3_server.limited_access_key,
                       secret_key=s3_server.limited_secret_key)
    with pytest.raises(StoreUnavailableError) as exc:
        store.create()
    message = str(exc.value)
    assert name in message and s3_server.endpoint in message
    assert "may not create" in message and "s3:CreateBucket" in message


@pytest.mark.parametrize("op", ["save", "load", "stat", "list"])
def test_wrong_secret_key_is_a_clear_access_denied(s3_server: SeaweedServer, bucket: str,
                                                   op: str) -> None:
    store = open_store(s3_server.url(bucket, "wrong"), access_key=s3_server.access_key,
                       secret_key="not-the-secret-" + os.urandom(4).hex(), retry=FAST_FAIL)
    h = Handle(FileType.INDEX, _id(b"i"))
    calls = {
        "save": lambda: store.save(h, b"i"),
        "load": lambda: store.load(h),
        "stat": lambda: store.stat(h),
        "list": lambda: list(store.list(FileType.INDEX)),
    }
    with pytest.raises(StoreUnavailableError) as exc:
        calls[op]()
    message = str(exc.value)
    assert "access denied" in message and s3_server.endpoint in message
    if op != "stat":  # HEAD answers carry no error body, so only "403" is known there
        assert "signature" in message and "AWS_SECRET_ACCESS_KEY" in message


def test_unknown_access_key_is_named(s3_server: SeaweedServer, bucket: str) -> None:
    store = open_store(s3_server.url(bucket), access_key="NOSUCHKEY", secret_key="whatever",
                       retry=FAST_FAIL)
    with pytest.raises(StoreUnavailableError, match=r"access key .*unknown"):
        store.load(Handle(FileType.CONFIG))


def test_secrets_never_reach_the_logs(s3_server: SeaweedServer, bucket: str,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # everything: ours, botocore, urllib3
    proxy = FaultProxy(("127.0.0.1", s3_server.port))
    try:
        proxy.set(slowdown=0.3)  # so retries are logged too
        store = open_store(proxy.url(bucket, "secrets"), **s3_server.store_options(),
                           retry=RetryPolicy(max_attempts=30, base_delay=0.01, max_delay=0.02))
        data = os.urandom(2000)
        h = Handle(FileType.PACK, _id(data))
        store.create()
        for _ in range(4):
            store.save(h, data)
            assert store.load(h, 10, 100) == data[10:110]
        list(store.list(FileType.PACK))
        store.remove(h)
        bad = open_store(proxy.url(bucket, "secrets"), access_key=s3_server.access_key,
                         secret_key=s3_server.secret_key[::-1], retry=FAST_FAIL)
        with pytest.raises(StoreUnavailableError) as exc:
            bad.load(h)
    finally:
        proxy.close()
    assert proxy.counts["slowdown"] > 0
    assert "retrying" in caplog.text, "the retries were logged"
    assert len(caplog.records) > 20
    for secret in (s3_server.secret_key, s3_server.secret_key[::-1]):
        assert secret not in caplog.text
        assert secret not in str(exc.value) and secret not in repr(store)


def test_credentials_from_environment(s3_server: SeaweedServer, bucket: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    store = open_store(s3_server.url(bucket, "env"))
    store.save(Handle(FileType.LOCK, _id(b"lock")), b"lock")
    assert store.load(Handle(FileType.LOCK, _id(b"lock"))) == b"lock"


def test_credentials_from_profile(s3_server: SeaweedServer, bucket: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    creds = tmp_path / "credentials"
    creds.write_text(f"[backup]\naws_access_key_id = {s3_server.access_key}\n"
                     f"aws_secret_access_key = {s3_server.secret_key}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    store = open_store(s3_server.url(bucket, "profile"), profile="backup")
    assert list(store.list(FileType.SNAPSHOT)) == []
    with pytest.raises(UsageError, match="profile 'nosuch' not found"):
        open_store(s3_server.url(bucket), profile="nosuch")


def test_missing_bucket_is_not_found(s3_server: SeaweedServer) -> None:
    store = open_store(s3_server.url("e3-no-such-bucket"), **s3_server.store_options())
    with pytest.raises(NotFoundError, match="bucket 'e3-no-such-bucket' does not exist"):
        store.load(Handle(FileType.CONFIG))


@pytest.fixture
def tls_proxy(s3_server: SeaweedServer, tmp_path: Path) -> Iterator[tuple[FaultProxy, Path]]:
    cert, key = self_signed_cert(tmp_path / "tls")
    proxy = FaultProxy(("127.0.0.1", s3_server.port), tls=server_context(cert, key))
    try:
        yield proxy, cert
    finally:
        proxy.close()


def test_self_signed_endpoint_needs_ca_bundle_or_insecure(
    s3_server: SeaweedServer, bucket: str, tls_proxy: tuple[FaultProxy, Path],
) -> None:
    proxy, cert = tls_proxy
    url = proxy.url(bucket, "tls")
    assert url.startswith("s3:https://")
    h = Handle(FileType.KEY, _id(b"tls"))
    untrusted = open_store(url, **s3_server.store_options(), retry=FAST_FAIL)
    with pytest.raises(StoreUnavailableError, match=r"TLS.*--ca-bundle"):
        untrusted.save(h, b"tls")
    trusted = open_store(url, **s3_server.store_options(), ca_bundle=str(cert))
    trusted.save(h, b"tls")
    insecure = open_store(url, **s3_server.store_options(), insecure_tls=True)
    assert insecure.load(h) == b"tls"


def test_store_options_are_checked(s3_server: SeaweedServer, tmp_path: Path) -> None:
    url = s3_server.url("anybucket")
    with pytest.raises(UsageError, match=r"unknown storage option.*colour"):
        open_store(url, colour="blue")
    with pytest.raises(UsageError, match="apply to s3: and rest: repositories only"):
        open_store(str(tmp_path), region="eu-west-1")
    # the store names its own options, not a CLI flag: the agent and the server call it too
    with pytest.raises(UsageError, match=r"ca_bundle\).*insecure_tls\) exclude each other"):
        open_store(url, ca_bundle=__file__, insecure_tls=True)
    with pytest.raises(UsageError, match=r"^no repository location given") as empty:
        open_store("")
    assert "--" not in str(empty.value)
    with pytest.raises(UsageError, match="not a readable file"):
        open_store(url, ca_bundle=str(tmp_path / "missing.pem"))
    with pytest.raises(UsageError, match="upload_connections"):
        open_store(url, upload_connections=0)
    with pytest.raises(UsageError, match="both"):
        open_store(url, access_key="only-one")
    s = open_store(url, upload_connections=16, region="eu-central-1", limit_upload=512)
    assert isinstance(s, LimitedStore) and isinstance(s.inner, S3Store)
    assert s.inner.upload_connections == 16 and s.inner.region == "eu-central-1"
    assert s.inner.pool_size >= 16


@pytest.mark.parametrize(("url", "endpoint", "bucket", "prefix"), [
    ("s3:http://127.0.0.1:8333/bk", "http://127.0.0.1:8333", "bk", ""),
    ("s3:http://127.0.0.1:8333/bk/", "http://127.0.0.1:8333", "bk", ""),
    ("s3:https://s3.example.com/bk/a/b/", "https://s3.example.com", "bk", "a/b"),
    ("s3:s3.amazonaws.com/my.bucket/repo", "https://s3.amazonaws.com", "my.bucket", "repo"),
    ("s3:http://[::1]:9000/bk/p", "http://[::1]:9000", "bk", "p"),
])
def test_parse_s3_url(url: str, endpoint: str, bucket: str, prefix: str) -> None:
    loc = parse_s3_url(url)
    assert (loc.endpoint, loc.bucket, loc.prefix) == (endpoint, bucket, prefix)


@pytest.mark.parametrize(("url", "problem"), [
    ("s3:http://127.0.0.1:8333", "no bucket"),
    ("s3:http://127.0.0.1:8333/", "no bucket"),
    ("s3:ftp://host/bk", "scheme must be http or https"),
    ("s3:http://AK:pw-s3cr3t@host/bk", "credentials do not belong in the URL"),
    ("s3:http://AK:pw-s3cr3t@host:99999/bk", "credentials do not belong in the URL"),
    ("s3:ftp://AK:pw-s3cr3t@host/bk", "credentials do not belong in the URL"),
    ("s3:http://host:99999/bk", "invalid S3 URL"),
    ("s3:http:///bk", "no host"),
    ("s3:http://host/bk?x=1", "no query"),
    ("s3:http://host/bk/../etc", "'.' and '..'"),
    ("s3:http://host/bad*bucket", "not a valid bucket name"),
    ("local:/x", "must start with s3:"),
])
def test_parse_s3_url_rejects(url: str, problem: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_s3_url(url)
    assert problem in str(exc.value)
    assert "s3cr3t" not in str(exc.value)
