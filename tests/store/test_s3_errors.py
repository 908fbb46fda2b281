"""Every botocore/urllib3 error maps to a StoreError, with the right retry decision."""

from __future__ import annotations

import http.client
import inspect
from typing import Any

import pytest
import urllib3.exceptions
from botocore import exceptions as bce

from e3backup.errors import NotFoundError, StoreError, StoreUnavailableError
from e3backup.store import Handle
from e3backup.store.base import FileType
from e3backup.store.retry import RetryPolicy
from e3backup.store.s3 import S3Store
from e3backup.store.s3_errors import FOREIGN_ERRORS, is_retryable, map_error
from e3backup.store.s3_location import S3Location

ENDPOINT = "http://127.0.0.1:9"


def _foreign_classes() -> list[type[BaseException]]:
    """botocore's and urllib3's own exception classes, and http.client's (raw body reads)."""
    out = []
    for module in (bce, urllib3.exceptions, http.client):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, Exception) and not issubclass(cls, Warning)
                    and cls.__module__ == module.__name__):
                out.append(cls)
    return out


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance without running constructors that need specific keyword arguments."""
    e = cls.__new__(cls)
    Exception.__init__(e, f"{cls.__name__} happened")
    if issubclass(cls, bce.ClientError):
        e.response = {"Error": {"Code": "Weird"}}  # type: ignore[attr-defined]
    return e


def _client_error(code: str, status: int, message: str = "msg") -> bce.ClientError:
    return bce.ClientError({"Error": {"Code": code, "Message": message},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize("cls", _foreign_classes(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_no_foreign_error_is_left_unmapped(cls: type[BaseException]) -> None:
    e = _instance(cls)
    assert isinstance(e, FOREIGN_ERRORS), "the store catches this family"
    mapped = map_error(e, what="GET bk/key", endpoint=ENDPOINT, bucket="bk")
    assert isinstance(mapped, StoreError)
    assert "GET bk/key" in str(mapped)
    assert isinstance(is_retryable(e), bool)


@pytest.fixture(scope="module")
def store() -> S3Store:
    return S3Store(S3Location(ENDPOINT, "bk", "pre"), access_key="a", secret_key="b",
                   retry=RetryPolicy(max_attempts=2, base_delay=0, max_delay=0))


@pytest.mark.parametrize("cls", _foreign_classes(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_store_boundary_raises_only_store_errors(store: S3Store, cls: type[BaseException]) -> None:
    def fail(**kwargs: Any) -> None:
        raise _instance(cls)

    store._client.head_object = fail
    with pytest.raises(StoreError) as exc:
        store.stat(Handle(FileType.KEY, "ab" * 32))
    assert "bk/pre/keys/abab" in str(exc.value)
    assert exc.value.__cause__ is not None


@pytest.mark.parametrize(("error", "kind", "retry", "words"), [
    (_client_error("NoSuchKey", 404), NotFoundError, False, ["not found"]),
    (_client_error("404", 404, "Not Found"), NotFoundError, False, ["not found"]),
    (_client_error("NoSuchBucket", 404), NotFoundError, False, ["bucket 'bk' does not exist"]),
    (_client_error("SlowDown", 503), StoreUnavailableError, True, ["SlowDown", "HTTP 503"]),
    (_client_error("InternalError", 500), StoreUnavailableError, True, ["InternalError"]),
    (_client_error("TooManyRequests", 429), StoreUnavailableError, True, ["429"]),
    (_client_error("RequestTimeout", 400), StoreUnavailableError, True, ["RequestTimeout"]),
    (_client_error("SignatureDoesNotMatch", 403), StoreUnavailableError, False,
     ["access denied", ENDPOINT, "signature", "AWS_SECRET_ACCESS_KEY"]),
    (_client_error("InvalidAccessKeyId", 403), StoreUnavailableError, False,
     ["access denied", "AWS_ACCESS_KEY_ID"]),
    (_client_error("AccessDenied", 403), StoreUnavailableError, False, ["access denied", "'bk'"]),
    (_client_error("InvalidBucketName", 400), StoreUnavailableError, False, ["InvalidBucketName"]),
    (bce.EndpointConnectionError(endpoint_url=ENDPOINT), StoreUnavailableError, True,
     ["cannot reach", ENDPOINT]),
    (bce.ReadTimeoutError(endpoint_url=ENDPOINT), StoreUnavailableError, True, ["cannot reach"]),
    (bce.ConnectionClosedError(endpoint_url=ENDPOINT), StoreUnavailableError, True, []),
    (bce.ResponseStreamingError(error="reset"), StoreUnavailableError, True, []),
    (bce.SSLError(endpoint_url=ENDPOINT, error="CERTIFICATE_VERIFY_FAILED"),
     StoreUnavailableError, False, ["TLS", "--ca-bundle"]),
    (bce.NoCredentialsError(), StoreUnavailableError, False, ["AWS_ACCESS_KEY_ID"]),
    (urllib3.exceptions.ProtocolError("Connection broken"), StoreUnavailableError, True, []),
    (ConnectionResetError(104, "reset by peer"), StoreUnavailableError, True, []),
    (bce.ParamValidationError(report="bad"), StoreUnavailableError, False, []),
])
def test_mapping_table(error: BaseException, kind: type[StoreError], retry: bool,
                       words: list[str]) -> None:
    mapped = map_error(error, what="GET bk/pre/keys/x", endpoint=ENDPOINT, bucket="bk")
    assert type(mapped) is kind
    assert is_retryable(error) is retry
    for w in ["bk/pre/keys/x", *words]:
        assert w in str(mapped)
