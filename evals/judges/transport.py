"""HTTP helpers of the API judges: redacting secrets, reading ``Retry-After``."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Sequence


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with each secret, any ``Bearer ...`` token and any ``sk-...`` key redacted."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    text = re.sub(r"(?i)(bearer\s+)[^\s'\",}]+", r"\1[redacted]", text)
    return re.sub(r"\bsk-[A-Za-z0-9_\-]{6,}", "[redacted]", text)


def env_name_for_message(name: str) -> str:
    """``$NAME`` for a conventional variable name; never echo something that may be a key."""
    if re.fullmatch(r"[A-Z][A-Z0-9_]{0,39}", name):
        return f"${name}"
    return "the variable named by --judge-api-key-env"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
