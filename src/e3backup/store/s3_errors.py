"""botocore and urllib3 errors mapped to ours, at the boundary of the S3 store.

Two questions are answered for every foreign error: is it worth retrying (throttling, 5xx,
timeouts, resets), and which ``StoreError`` tells the user what went wrong. Messages name the
operation, the endpoint, the bucket and key, and the reason; never credentials.

    404 / NoSuchKey                  -> NotFoundError (not retried)
    NoSuchBucket                     -> NotFoundError naming the bucket
    403 AccessDenied / signature     -> StoreUnavailableError "access denied" (not retried)
    TLS failures                     -> StoreUnavailableError naming --ca-bundle / --insecure-tls
    5xx, 429, SlowDown, timeouts,
    resets, refused connections      -> retried, then StoreUnavailableError
    anything else from botocore      -> StoreUnavailableError
"""

from __future__ import annotations

import http.client
from typing import Any

import urllib3.exceptions
from botocore import exceptions as bce

from ..errors import NotFoundError, StoreError, StoreUnavailableError

#: Foreign exception families the S3 store catches and maps; anything else is a bug of ours.
FOREIGN_ERRORS: tuple[type[BaseException], ...] = (
    bce.BotoCoreError,
    bce.ClientError,
    bce.UndefinedModelAttributeError,  # botocore's only error outside BotoCoreError
    urllib3.exceptions.HTTPError,
    urllib3.exceptions.ProxySchemeUnsupported,  # a ValueError, not an HTTPError
    http.client.HTTPException,  # a body read can surface IncompleteRead unwrapped
    OSError,
)

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_DENIED_CODES = frozenset({
    "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken",
    "AllAccessDisabled", "AccountProblem", "InvalidSecurity", "403",
})
_RETRY_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "TooManyRequestsException", "RequestTimeout", "RequestTimeoutException", "InternalError",
    "ServiceUnavailable", "ServiceUnavailableException", "PriorRequestNotComplete",
    "RequestThrottled", "BandwidthLimitExceeded", "500", "502", "503", "504",
})
_RETRY_TRANSPORT = (
    bce.EndpointConnectionError,   # refused, DNS, connect failures (incl. ConnectTimeoutError)
    bce.ConnectionClosedError,
    bce.ReadTimeoutError,
    bce.ConnectTimeoutError,
    bce.ResponseStreamingError,    # body read broke off (reset mid-response)
    bce.IncompleteReadError,
    bce.HTTPClientError,
)
_CREDENTIAL_ERRORS = (
    bce.NoCredentialsError, bce.PartialCredentialsError, bce.CredentialRetrievalError,
)


def client_error_parts(e: bce.ClientError) -> tuple[str, int, str]:
    """``(code, http_status, message)`` of an error response."""
    resp: dict[str, Any] = e.response or {}
    err = resp.get("Error") or {}
    status = int((resp.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    return str(err.get("Code") or status or "?"), status, str(err.get("Message") or "")


def is_retryable(e: BaseException) -> bool:
    """True for failures that may go away by themselves: throttling, 5xx, network trouble."""
    if isinstance(e, bce.ClientError):
        code, status, _ = client_error_parts(e)
        return status >= 500 or status == 429 or code in _RETRY_CODES
    if isinstance(e, bce.SSLError):
        return False  # a certificate does not become trusted by retrying
    if isinstance(e, _RETRY_TRANSPORT):
        return True
    if isinstance(e, urllib3.exceptions.SSLError):
        return False
    if isinstance(e, urllib3.exceptions.HTTPError):
        return isinstance(e, (urllib3.exceptions.ProtocolError, urllib3.exceptions.TimeoutError,
                              urllib3.exceptions.NewConnectionError,
                              urllib3.exceptions.IncompleteRead))
    if isinstance(e, http.client.HTTPException):
        return isinstance(e, (http.client.IncompleteRead, http.client.BadStatusLine))
    if isinstance(e, OSError):
        return isinstance(e, (ConnectionError, TimeoutError))
    return False


def map_error(e: BaseException, *, what: str, endpoint: str, bucket: str) -> StoreError:
    """The ``StoreError`` for a foreign error raised while doing ``what`` (e.g. ``GET b/key``)."""
    if isinstance(e, StoreError):
        return e
    if isinstance(e, bce.ClientError):
        return _map_client_error(e, what=what, endpoint=endpoint, bucket=bucket)
    if isinstance(e, _CREDENTIAL_ERRORS):
        return StoreUnavailableError(
            f"{what}: no usable S3 credentials ({_text(e)}); set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or choose a profile"
        )
    if isinstance(e, (bce.SSLError, urllib3.exceptions.SSLError)):
        return StoreUnavailableError(
            f"{what}: TLS handshake with {endpoint} failed ({_text(e)}); for a self-signed "
            "certificate use --ca-bundle FILE (or --insecure-tls)"
        )
    if isinstance(e, _RETRY_TRANSPORT) or is_retryable(e):
        return StoreUnavailableError(f"{what}: cannot reach {endpoint}: {_text(e)}")
    return StoreUnavailableError(f"{what}: {type(e).__name__}: {_text(e)}")


def _map_client_error(e: bce.ClientError, *, what: str, endpoint: str, bucket: str) -> StoreError:
    code, status, message = client_error_parts(e)
    detail = (f"HTTP {status}" if code.isdigit() else f"{code} (HTTP {status})") + (
        f": {message}" if message else ""
    )
    if code == "NoSuchBucket":
        return NotFoundError(f"{what}: bucket {bucket!r} does not exist at {endpoint}")
    if code in _NOT_FOUND_CODES or status == 404:
        return NotFoundError(f"{what}: not found")
    if code == "SignatureDoesNotMatch":
        return StoreUnavailableError(
            f"{what}: access denied by {endpoint}: the request signature does not match, so the "
            "secret key (AWS_SECRET_ACCESS_KEY) is wrong for this access key"
        )
    if code == "InvalidAccessKeyId":
        return StoreUnavailableError(
            f"{what}: access denied by {endpoint}: the access key (AWS_ACCESS_KEY_ID) is unknown "
            "to the server"
        )
    if code in _DENIED_CODES or status == 403:
        return StoreUnavailableError(
            f"{what}: access denied by {endpoint} ({detail}): the access key or the secret key "
            f"(signature) is wrong, or they lack permission on bucket {bucket!r}"
        )
    if is_retryable(e):
        return StoreUnavailableError(f"{what}: {endpoint} kept failing: {detail}")
    return StoreUnavailableError(f"{what}: {endpoint} refused the request: {detail}")


def _text(e: BaseException) -> str:
    try:
        text = str(e) or type(e).__name__
    except Exception:  # a foreign __str__ that needs attributes a bare instance lacks
        text = type(e).__name__
    return text if len(text) <= 300 else text[:300] + "…"


__all__ = ["FOREIGN_ERRORS", "client_error_parts", "is_retryable", "map_error"]
