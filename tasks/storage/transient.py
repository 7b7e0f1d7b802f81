"""Is this storage error worth a retry? One answer for every off-site backend.

Transient: the network or the service hiccupped — connection reset or refused, timeouts,
HTTP 5xx, 408, 429 and throttling (S3 `SlowDown`). Permanent: anything a retry cannot
cure — access denied, no such bucket or container, bad credentials, an unknown host key,
any other 4xx — and anything not recognised, so that a surprise never turns into minutes
of pointless retrying.

The SDKs wrap each other's errors (s3fs turns a botocore `ClientError` into an `OSError`
whose `__cause__` is the original, sshfs turns asyncssh errors into `OSError`s, ...), so
the whole chain of causes is read: an SDK's precise word (error class, code, HTTP status)
wins over Python's generic types, and among equals the outermost link decides. An error
raised while handling a transient one (a clean-up that failed too) is transient. Classes
are recognised by name, so no SDK is imported here.
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
        # The multipart upload's state is gone (a restarted server); a new upload helps.
        "NoSuchUpload",
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


def _specific(exc: BaseException) -> bool | None:
    """What an SDK says precisely: its error class, error code or HTTP status."""
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
    return None


def _generic(exc: BaseException) -> bool | None:
    """What Python's own exception types say (often a translation of an SDK error)."""
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


def _verdict(exc: BaseException) -> bool | None:
    """An SDK's precise word anywhere in the chain first (s3fs turns both NoSuchBucket and
    NoSuchUpload into FileNotFoundError), else the outermost generic type."""
    links = list(causes(exc))
    for classify in (_specific, _generic):
        for link in links:
            verdict = classify(link)
            if verdict is not None:
                return verdict
    return None


def _handled(exc: BaseException) -> BaseException | None:
    """The error `exc` was raised while handling (as opposed to translating), if any."""
    for link in causes(exc):
        context = link.__context__
        if context is not None and context is not link.__cause__:
            return context
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the operation that raised `exc` may succeed.

    An error raised while cleaning up after a transient one counts as transient: when
    an S3 part upload loses its connection, s3fs aborts the multipart upload, and that
    abort can fail with `NoSuchUpload` (the server lost its state); the operation as a
    whole still failed for a network reason and is worth another try.
    """
    if _verdict(exc):
        return True
    original = _handled(exc)
    return original is not None and _verdict(original) is True
