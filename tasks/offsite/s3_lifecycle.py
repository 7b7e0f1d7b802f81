"""The guide's S3 lifecycle policy, applied with boto3: to Glacier after N days, expire after M.

One rule, identified by `RULE_ID` and limited to the destination's prefix, so that other
rules of the bucket (and other data in it) are left as they are; applying it again
replaces only that rule. Incomplete multipart uploads (what a killed upload leaves, never
visible as objects but billed) are aborted after a week.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tasks.core.errors import ConfigError
from tasks.storage.destination import Destination

RULE_ID = "chatbot-backup-offsite"
ABORT_INCOMPLETE_UPLOADS_DAYS = 7


def lifecycle_rule(prefix: str, glacier_days: int, expire_days: int) -> dict[str, Any]:
    if glacier_days >= expire_days:
        raise ConfigError(
            f"OFFSITE_GLACIER_DAYS ({glacier_days}) must be less than "
            f"OFFSITE_EXPIRE_DAYS ({expire_days})"
        )
    return {
        "ID": RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": f"{prefix.strip('/')}/" if prefix.strip("/") else ""},
        "Transitions": [{"Days": glacier_days, "StorageClass": "GLACIER"}],
        "Expiration": {"Days": expire_days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_INCOMPLETE_UPLOADS_DAYS},
    }


def s3_client(env: Mapping[str, str] | None = None) -> Any:
    """A boto3 S3 client configured the way `tasks.storage.destination` configures s3fs."""
    import boto3
    from botocore.config import Config

    env = os.environ if env is None else env
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    config = Config(
        retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=10, read_timeout=60
    )
    return boto3.client("s3", endpoint_url=endpoint or None, region_name=region, config=config)


def current_rules(client: Any, bucket: str) -> list[dict[str, Any]]:
    from botocore.exceptions import ClientError

    try:
        answer = client.get_bucket_lifecycle_configuration(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise
    return list(answer.get("Rules", []))


def apply_lifecycle(
    dest: Destination, glacier_days: int, expire_days: int, client: Any = None
) -> list[dict[str, Any]]:
    """Put our rule on the destination's bucket; returns the bucket's rules afterwards."""
    if dest.scheme != "s3":
        raise ConfigError(
            f"offsite-setup applies an S3 lifecycle policy; {dest.display} is not s3://"
        )
    rule = lifecycle_rule(str(dest.options.get("prefix", "")), glacier_days, expire_days)
    bucket = str(dest.options["bucket"])
    client = client or s3_client()
    rules = [r for r in current_rules(client, bucket) if r.get("ID") != RULE_ID] + [rule]
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": rules}
    )
    return current_rules(client, bucket)
