"""Credentials from Prefect `Secret` blocks, for operators who keep secrets in Prefect.

When neither the environment nor `.env` sets one of `ADMIN_DATABASE_URL`,
`SMTP_PASSWORD`, `ALERT_SLACK_WEBHOOK`, `ALERT_WEBHOOK`, `load_settings()` asks the
Prefect server (only when `PREFECT_API_URL` is set and the process runs Prefect anyway:
no temporary server is ever started for this) for the Secret block named after the variable, lower case with dashes and the
`chatbot-backup-` prefix: `chatbot-backup-admin-database-url`, `chatbot-backup-smtp-password`,
`chatbot-backup-alert-slack-webhook`, `chatbot-backup-alert-webhook`. The environment
wins. A value found is registered for redaction like any other secret. A server that does
not answer within a few seconds leaves the secret unset (the usual error follows).
"""

from __future__ import annotations

import os
import sys

BLOCK_PREFIX = "chatbot-backup-"
TIMEOUT_SECONDS = 3.0


def block_name(field: str) -> str:
    return BLOCK_PREFIX + field.replace("_", "-")


_cache: dict[tuple[str, tuple[str, ...]], dict[str, str]] = {}


def _api_url() -> str | None:
    """PREFECT_API_URL (environment or Prefect's profile), but only in a process that has
    loaded Prefect already: the WAL fast path (flows/wal_cli.py) never loads it for this."""
    if "prefect" not in sys.modules:
        return None
    url = os.environ.get("PREFECT_API_URL")
    if url:
        return url
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def from_secret_blocks(fields: list[str]) -> dict[str, str]:
    """The values of the Secret blocks for `fields` that exist; {} without a server."""
    url = _api_url()
    if not url:
        return {}
    key = (url, tuple(fields))
    if key not in _cache:
        _cache[key] = _read(fields)
    return dict(_cache[key])


def _read(fields: list[str]) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    found: dict[str, str] = {}
    with get_client(sync_client=True, httpx_settings={"timeout": TIMEOUT_SECONDS}) as client:
        for field in fields:
            try:
                document = client.read_block_document_by_name(
                    block_name(field), block_type_slug="secret", include_secrets=True
                )
            except ObjectNotFound:
                continue
            value = document.data.get("value")
            if isinstance(value, str) and value:
                found[field] = value
    return found
