"""Alert delivery: e-mail over SMTP, Slack, and a generic JSON webhook.

Owns the wording of an alert on each channel and its delivery. Every configured channel
is tried, in parallel; a channel that fails is retried on transient errors (connection
trouble, timeouts, 4xx SMTP replies, HTTP 429 and 5xx) with backoff, then reported — it
never stops the others and never raises. Every text that leaves the process passes
through `tasks.core.redact.redact`, and channel errors never quote a webhook URL.
"""

from __future__ import annotations

import ipaddress
import json
import math
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from tasks.core.backoff import RetriesExhausted, RetryPolicy, retry_call
from tasks.core.redact import redact

ATTEMPTS = 3
BACKOFF_SECONDS = 1.0  # doubled after each failed attempt
USER_AGENT = "chatbot-backup"
_ICON = {"ok": ":white_check_mark:", "warning": ":warning:", "critical": ":red_circle:"}


@dataclass(frozen=True)
class Alert:
    """What happened: `status` is warning, critical, or failed (a flow run failed)."""

    status: str
    job: str
    message: str
    checks: list[dict[str, str]] = field(default_factory=list)  # name, severity, reason
    host: str = field(default_factory=socket.gethostname)
    timestamp: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def clean(self) -> Alert:
        """A copy with every text redacted."""
        return Alert(
            status=self.status,
            job=redact(self.job),
            message=redact(self.message),
            checks=[{k: redact(str(v)) for k, v in c.items()} for c in self.checks],
            host=redact(self.host),
            timestamp=self.timestamp,
        )

    @property
    def title(self) -> str:
        return f"[chatbot-backup] {self.status.upper()}: {self.job} on {self.host}"

    def problem_checks(self) -> list[dict[str, str]]:
        return [c for c in self.checks if c.get("severity", "ok") != "ok"]


@dataclass(frozen=True)
class ChannelResult:
    channel: str  # email, slack, webhook
    delivered: bool
    attempts: int
    detail: str  # "delivered", or why not (never a URL or a password)


class TransientError(Exception):
    """A delivery error worth another attempt."""


class PermanentError(Exception):
    """A delivery error that another attempt will not cure."""


# -- message bodies --------------------------------------------------------------------


def webhook_payload(alert: Alert) -> dict[str, Any]:
    """The generic webhook's JSON: status, job, host, checks, message (plus timestamp)."""
    return {
        "status": alert.status,
        "job": alert.job,
        "host": alert.host,
        "checks": alert.checks,
        "message": alert.message,
        "timestamp": alert.timestamp,
    }


def slack_text(alert: Alert) -> str:
    """A readable Slack message: headline, the message, then one line per problem."""
    icon = _ICON.get(alert.status, ":red_circle:")
    lines = [f"{icon} *chatbot-backup {alert.job}: {alert.status.upper()}* on `{alert.host}`"]
    lines.append(alert.message)
    for check in alert.problem_checks():
        lines.append(f"• *{check.get('name')}* ({check.get('severity')}): {check.get('reason')}")
    lines.append(f"_{alert.timestamp}_")
    return "\n".join(lines)


def email_body(alert: Alert) -> str:
    lines = [
        f"Job:     {alert.job}",
        f"Host:    {alert.host}",
        f"Status:  {alert.status.upper()}",
        f"Time:    {alert.timestamp}",
        "",
        alert.message,
    ]
    if alert.checks:
        lines += ["", "Checks:"]
        width = max(len(c.get("name", "")) for c in alert.checks)
        for check in alert.checks:
            lines.append(
                f"  {check.get('name', ''):<{width}}  {check.get('severity', ''):<8}  "
                f"{check.get('reason', '')}"
            )
    return "\n".join(lines) + "\n"


# -- channels ----------------------------------------------------------------------


def post_json(url: str, payload: dict[str, Any], timeout: float) -> None:
    """POST JSON; raises TransientError or PermanentError without quoting the URL."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(1024)
    except urllib.error.HTTPError as exc:
        if exc.code == 429 or exc.code >= 500:
            raise TransientError(f"HTTP {exc.code}") from None
        raise PermanentError(f"HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise TransientError(f"cannot connect ({_reason(exc.reason)})") from None
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise TransientError(f"connection failed ({_reason(exc)})") from None
    except ValueError:
        raise PermanentError("the configured URL is not a valid http(s) URL") from None


def _reason(value: object) -> str:
    if isinstance(value, OSError) and value.strerror:
        return value.strerror
    return type(value).__name__ if not str(value) else str(value)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    user: str | None
    password: str | None  # plain here, only for the login call
    sender: str
    recipients: list[str]
    timeout: float


def send_email(config: SmtpConfig, alert: Alert) -> None:
    """One message to every recipient; STARTTLS when offered, implicit TLS on port 465.

    A password is never sent in the clear to another machine: without TLS, a login
    is only made to a loopback relay.
    """
    message = EmailMessage()
    message["Subject"] = alert.title
    message["From"] = config.sender
    message["To"] = ", ".join(config.recipients)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=alert.host or None)
    message.set_content(email_body(alert))
    context = ssl.create_default_context()
    try:
        smtp: smtplib.SMTP
        if config.port == 465:
            smtp = smtplib.SMTP_SSL(
                config.host, config.port, timeout=config.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
        with smtp:
            smtp.ehlo()
            secure = config.port == 465
            if not secure and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
                secure = True
            if config.user:
                if not secure and not _is_loopback(config.host):
                    raise PermanentError(
                        "the SMTP server offers no STARTTLS; refusing to send SMTP_PASSWORD "
                        "in the clear"
                    )
                smtp.login(config.user, config.password or "")
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        raise PermanentError(f"SMTP login refused ({exc.smtp_code})") from None
    except smtplib.SMTPRecipientsRefused:
        raise PermanentError("every recipient was refused") from None
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:
            raise TransientError(f"SMTP {exc.smtp_code}") from None
        raise PermanentError(f"SMTP {exc.smtp_code}") from None
    except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError) as exc:
        raise TransientError(f"SMTP connection lost ({type(exc).__name__})") from None
    except smtplib.SMTPException as exc:
        raise PermanentError(f"SMTP error ({type(exc).__name__})") from None
    except ssl.SSLError as exc:
        raise PermanentError(f"TLS failed ({exc.reason or type(exc).__name__})") from None
    except OSError as exc:
        raise TransientError(
            f"cannot connect to {config.host}:{config.port} ({_reason(exc)})"
        ) from None


# -- delivery with retries -------------------------------------------------------------


def deliver(
    channel: str,
    send: Callable[[], None],
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF_SECONDS,
) -> ChannelResult:
    """Call `send`, retrying transient errors (`retry_call`: `backoff`, then doubled); never raises."""
    policy = RetryPolicy(
        window_seconds=math.inf, first_delay=backoff, max_delay=math.inf, max_attempts=attempts
    )
    tried = 0

    def attempt() -> None:
        nonlocal tried
        tried += 1
        send()

    try:
        retry_call(attempt, policy, lambda exc: isinstance(exc, TransientError))
    except RetriesExhausted as exc:
        return ChannelResult(channel, False, tried, redact(f"{exc.last} after {tried} attempts"))
    except PermanentError as exc:
        return ChannelResult(channel, False, tried, redact(str(exc)))
    except Exception as exc:  # a bug in one channel must not silence the others
        return ChannelResult(channel, False, tried, redact(f"{type(exc).__name__}: {exc}"))
    return ChannelResult(channel, True, tried, "delivered")


def channels_for(settings: Any, alert: Alert) -> dict[str, Callable[[], None]]:
    """The configured channels, each as a ready-to-call sender for `alert`."""
    senders: dict[str, Callable[[], None]] = {}
    timeout = float(getattr(settings, "alert_timeout", 10.0))
    if settings.alert_email:
        recipients = [a.strip() for a in settings.alert_email.split(",") if a.strip()]
        config = SmtpConfig(
            # With no SMTP_HOST, the local relay, as the guide's `mail` command would use.
            host=settings.smtp_host or "localhost",
            port=int(settings.smtp_port),
            user=settings.smtp_user,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            sender=settings.alert_from or f"chatbot-backup@{alert.host}",
            recipients=recipients,
            timeout=timeout,
        )
        senders["email"] = lambda: send_email(config, alert)
    if settings.alert_slack_webhook is not None:
        slack_url = settings.alert_slack_webhook.get_secret_value()
        if slack_url:
            senders["slack"] = lambda: post_json(slack_url, {"text": slack_text(alert)}, timeout)
    if settings.alert_webhook is not None:
        hook_url = settings.alert_webhook.get_secret_value()
        if hook_url:
            senders["webhook"] = lambda: post_json(hook_url, webhook_payload(alert), timeout)
    return senders


def send_alert(
    settings: Any,
    alert: Alert,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF_SECONDS,
) -> list[ChannelResult]:
    """Send `alert` to every configured channel at once; one result per channel."""
    alert = alert.clean()
    senders = channels_for(settings, alert)
    if not senders:
        return []
    with ThreadPoolExecutor(max_workers=len(senders), thread_name_prefix="alert") as pool:
        futures = {
            name: pool.submit(deliver, name, send, attempts, backoff)
            for name, send in senders.items()
        }
        return [futures[name].result() for name in senders]
