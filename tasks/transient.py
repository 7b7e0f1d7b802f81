"""Is this storage error worth a retry? One answer for every off-site backend.

Transient: the network or the service hiccupped — connection reset or refused, timeouts,
HTTP 5xx, 408, 429 and throttling (S3 `SlowDown`). Permanent: anything a retry cannot
cure — access denied, no such bucket or container, bad credentials, an unknown host key,
any other 4xx — and anything not recognised, so that a surprise never turns into minutes
of pointless retrying.

The SDKs wrap each other's errors (s3fs turns a botocore `ClientError` into an `OSError`
whose `__cause__` is the original, sshfs turns asyncssh errors into `OSError`s, ...), so
the chain of causes is walked from the outside in and the first link that says
something decides. Classes are recognised by name, so no SDK is imported here.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Any

_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ENETRESET,
    }
)
_PERMANENT_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOSPC, errno.EROFS, errno.EDQUOT}
)

# Class names, matched anywhere in an exception's MRO.
_TRANSIENT_CLASSES = frozenset(
    {
        # botocore / aiobotocore
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ResponseStreamingError",
        "IncompleteReadError",
        # aiohttp (gcsfs, adlfs, s3fs underneath)
        "ServerDisconnectedError",
        "ClientConnectorError",
        "ClientOSError",
        "ClientPayloadError",
        "ServerTimeoutError",
        # requests (google-auth)
        "ChunkedEncodingError",
        # azure-core
        "ServiceRequestError",
        "ServiceResponseError",
        # asyncssh
        "ConnectionLost",
        "SFTPConnectionLost",
        "SFTPNoConnection",
        # fsspec
        "FSTimeoutError",
    }
)
_PERMANENT_CLASSES = frozenset(
    {
        "NoCredentialsError",
        "PartialCredentialsError",
        "ClientAuthenticationError",
        "ResourceNotFoundError",
        "HostKeyNotVerifiable",
        "PermissionDenied",
        "SFTPPermissionDenied",
        "SFTPNoSuchFile",
        "NonRetryableError",
        "DefaultCredentialsError",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "RequestTimeout",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "ServerBusy",
        "OperationTimedOut",
    }
)
_PERMANENT_CODES = frozenset(
    {
        "AccessDenied",
        "NoSuchBucket",
        "NoSuchKey",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "InvalidBucketName",
        "InvalidObjectState",
        "AuthorizationFailure",
        "AuthenticationFailed",
        "ContainerNotFound",
        "BlobNotFound",
    }
)


def causes(exc: BaseException, limit: int = 12) -> Iterator[BaseException]:
    """`exc`, then its cause (or context), and so on, without looping."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < limit:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _http_facts(exc: BaseException) -> tuple[str | None, int | None]:
    """(error code, HTTP status) from whichever SDK shape `exc` has."""
    code: str | None = None
    status: int | None = None
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        code = (response.get("Error") or {}).get("Code")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    for attribute in ("status_code", "status"):  # azure-core, aiohttp
        value = getattr(exc, attribute, None)
        if isinstance(value, int):
            status = value
    error_code = getattr(exc, "error_code", None)  # azure storage
    if code is None and error_code is not None:
        code = str(error_code)
    raw = getattr(exc, "code", None)  # gcsfs HttpError
    if status is None and raw is not None and "HttpError" in _class_names(exc):
        try:
            status = int(raw)
        except (TypeError, ValueError):
            pass
    if not isinstance(status, int):
        status = None
    return (str(code) if code is not None else None), status


def _classify(exc: BaseException) -> bool | None:
    """True transient, False permanent, None when this link says nothing."""
    names = _class_names(exc)
    if names & _PERMANENT_CLASSES:
        return False
    if names & _TRANSIENT_CLASSES:
        return True
    code, status = _http_facts(exc)
    if code in _TRANSIENT_CODES:
        return True
    if code in _PERMANENT_CODES:
        return False
    if status is not None:
        if status >= 500 or status in (408, 429):
            return True
        if 400 <= status < 500:
            return False
    if isinstance(exc, (PermissionError, FileNotFoundError, FileExistsError)):
        return False
    if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in _TRANSIENT_ERRNOS:
            return True
        if exc.errno in _PERMANENT_ERRNOS:
            return False
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the operation that raised `exc` may succeed."""
    for link in causes(exc):
        verdict = _classify(link)
        if verdict is not None:
            return verdict
    return False
