"""Keep secrets out of every message: URLs lose their passwords, known secrets vanish.

Every secret the settings load is registered here, so that any text leaving the process
(log lines, error messages, alert bodies) can be scrubbed with one call.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, unquote

_lock = threading.Lock()
_secrets: set[str] = set()

# scheme://user:password@host  -> scheme://user:***@host
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)(?P<pw>[^@\s/]*)(?P<tail>@)"
)


def register_secret(value: str | None) -> None:
    """Remember a secret so that `redact` removes it, in plain and URL-quoted forms."""
    if not value or len(value) < 3:
        return
    with _lock:
        for form in {value, quote(value, safe=""), unquote(value), quote(value)}:
            if len(form) >= 3:
                _secrets.add(form)


def strip_url_password(url: str) -> str:
    """`postgresql://u:pw@h/db` -> `postgresql://u:***@h/db`."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + "***" + m.group("tail"), url)


def redact(text: str) -> str:
    """Remove every registered secret and every URL password from `text`."""
    text = strip_url_password(text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text
