"""Azure Blob Storage (adlfs): the filesystem with a tuned client, its upload options."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tasks.core.errors import ConfigError
from tasks.core.redact import register_secret
from tasks.storage.parts import PART_SIZE

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem


AZ_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


def azure_filesystem(env: Mapping[str, str]) -> tuple[Callable[[], AbstractFileSystem], dict[str, Any]]:
    connection = env.get("AZURE_STORAGE_CONNECTION_STRING")
    account = env.get("AZURE_STORAGE_ACCOUNT_NAME") or env.get("AZURE_STORAGE_ACCOUNT")
    key = env.get("AZURE_STORAGE_KEY")
    sas = env.get("AZURE_STORAGE_SAS_TOKEN")
    if connection:
        for part in connection.split(";"):
            name, _, value = part.partition("=")
            if name.strip().lower() in ("accountkey", "sharedaccesssignature"):
                register_secret(value.strip())
        if "accountname=" not in connection.lower() and "blobendpoint=" not in connection.lower():
            raise ConfigError(
                "AZURE_STORAGE_CONNECTION_STRING does not look like a connection string "
                "(no AccountName or BlobEndpoint)"
            )
    elif not (account and (key or sas)):
        raise ConfigError(
            "no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING (or "
            "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN)"
        )

    def make() -> AbstractFileSystem:
        from adlfs import AzureBlobFileSystem

        if connection:
            fs = AzureBlobFileSystem(connection_string=connection, skip_instance_cache=True)
        else:
            fs = AzureBlobFileSystem(
                account_name=account, account_key=key, sas_token=sas, skip_instance_cache=True
            )
        fs.service_client = tuned_azure_client(connection, account, key, sas)
        return fs

    return make, {"max_concurrency": 2}


def tuned_azure_client(
    connection: str | None, account: str | None, key: str | None, sas: str | None
) -> Any:
    """The blob service client adlfs would make, with bounded retries and memory.

    The SDK's default retry waits 15 s, 18 s, 24 s ... on a refused connection (about 85 s
    per failed call, measured); the outer loop owns the waiting, so the SDK retries only
    briefly. Blocks of 4 MiB and single PUTs up to 8 MiB keep memory bounded (its
    defaults read up to 64 MiB whole).
    """
    from azure.storage.blob.aio import BlobServiceClient, ExponentialRetry

    tuning: dict[str, Any] = {
        "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=1),
        "max_single_put_size": PART_SIZE,
        "max_block_size": 4 * 2**20,
        "connection_timeout": 10,
    }
    if connection:
        return BlobServiceClient.from_connection_string(connection, **tuning)
    url = f"https://{account}.blob.core.windows.net"
    if key:
        return BlobServiceClient(url, credential=key, **tuning)
    token = sas or ""
    return BlobServiceClient(url + (token if token.startswith("?") else f"?{token}"), **tuning)
