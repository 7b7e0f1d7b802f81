"""Google Cloud Storage (gcsfs): the filesystem, its upload options, the credential check."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tasks.core.errors import ConfigError
from tasks.storage.parts import PART_SIZE

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem


GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def gcs_filesystem(env: Mapping[str, str]) -> tuple[Callable[[], AbstractFileSystem], dict[str, Any]]:
    emulator = env.get("STORAGE_EMULATOR_HOST")
    credentials = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    token: Any
    if emulator:
        token = "anon"
    elif credentials:
        if not os.access(credentials, os.R_OK):
            raise ConfigError(
                f"GOOGLE_APPLICATION_CREDENTIALS: cannot read {credentials} "
                "(a service-account JSON key file)"
            )
        token = credentials
    else:
        require_google_default_credentials()
        token = None
    project = env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCLOUD_PROJECT")

    def make() -> AbstractFileSystem:
        # gcsfs reads this when it is imported; its default makes every bucket call
        # wait ~60 s on a gRPC probe for a feature (zonal buckets) we do not use.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        import gcsfs

        kwargs: dict[str, Any] = {"skip_instance_cache": True, "token": token}
        if emulator:
            kwargs["endpoint_url"] = emulator
        if project:
            kwargs["project"] = project
        return gcsfs.GCSFileSystem(**kwargs)

    return make, {"chunksize": PART_SIZE}


def require_google_default_credentials() -> None:
    try:
        import google.auth

        google.auth.default()
    except Exception:
        raise ConfigError(
            "no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS to a "
            "service-account key file (or STORAGE_EMULATOR_HOST for an emulator)"
        ) from None
