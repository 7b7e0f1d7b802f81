"""Prefect notification blocks made from the ALERT_* settings (the automations' targets).

- `ALERT_SLACK_WEBHOOK` -> `SlackWebhook` block `chatbot-backup-slack` (URL in a SecretStr).
- `ALERT_WEBHOOK` -> `CustomWebhookNotificationBlock` `chatbot-backup-webhook`: the URL
  lives only in the block's `secrets` (a SecretDict); its plain `url` field is the
  placeholder `{{webhook_url}}`, so the block document shows no secret. The JSON body
  has the same keys as the hooks' webhook alert: status, job, host, checks, message.
- E-mail: Prefect 3 itself has no SMTP block (only SendGrid), and `prefect-email` is not
  a dependency here: e-mail alerts stay with the failure hooks and the monitor.

A block whose setting is gone is deleted; only blocks named `chatbot-backup-*` are touched.
The failure hooks keep working without any of this (they need no server).
"""

from __future__ import annotations

import socket
from typing import Any, cast
from uuid import UUID

SLACK_BLOCK = "chatbot-backup-slack"
WEBHOOK_BLOCK = "chatbot-backup-webhook"


def _delete(block_type: Any, name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(
                name, block_type_slug=block_type.get_block_type_slug()
            )
        except ObjectNotFound:
            return
        client.delete_block_document(document.id)


def apply_notification_blocks(settings: Any) -> dict[str, UUID]:
    """Save (overwrite) the blocks the settings ask for; block name -> document id."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
    from pydantic import SecretStr

    blocks: dict[str, UUID] = {}
    slack = settings.alert_slack_webhook
    if slack is not None and slack.get_secret_value():
        block = SlackWebhook(url=SecretStr(slack.get_secret_value()))
        blocks[SLACK_BLOCK] = cast(UUID, block.save(SLACK_BLOCK, overwrite=True))
    else:
        _delete(SlackWebhook, SLACK_BLOCK)
    hook = settings.alert_webhook
    if hook is not None and hook.get_secret_value():
        custom = CustomWebhookNotificationBlock(
            name="chatbot-backup",
            url="{{webhook_url}}",
            json_data={
                "status": "critical",
                "job": "automation",
                "host": socket.gethostname(),
                "checks": [],
                "message": "{{subject}}: {{body}}",
            },
            timeout=float(getattr(settings, "alert_timeout", 10.0)),
            secrets={"webhook_url": hook.get_secret_value()},  # type: ignore[arg-type]
            headers=None,
            cookies=None,
        )
        blocks[WEBHOOK_BLOCK] = cast(UUID, custom.save(WEBHOOK_BLOCK, overwrite=True))
    else:
        _delete(CustomWebhookNotificationBlock, WEBHOOK_BLOCK)
    return blocks
