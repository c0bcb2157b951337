"""Secrets never reach a log line: the patterns that find them in any text, and a registry of the
values a process knows to be secret (its configured passwords and keys).

Applied by the log formatter to the finished line (message, extra fields and traceback alike), so
an exception whose text carries a credential is redacted as well. Secrets Millrace issues have a
shape that is found without being registered: access tokens are JWTs (``eyJ…``), refresh tokens
and gateway secrets carry a prefix (:data:`REFRESH_TOKEN_PREFIX`, :data:`GATEWAY_SECRET_PREFIX`).
"""

from __future__ import annotations

import re
import threading

REDACTED = "[redacted]"
REFRESH_TOKEN_PREFIX = "mrt_"
GATEWAY_SECRET_PREFIX = "mrs_"

# Not "token" alone: "Invalid token: expired" is a message an operator needs to read.
_NAMES = (
    r"password|passwd|pwd|secret|client_secret|refresh_token|access_token|id_token|api_key"
    r"|apikey|private_key"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys (literal or JSON-escaped newlines between the armour lines).
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.S
        ),
        REDACTED,
    ),
    # JWTs: header.payload[.signature], each part base64url; "eyJ" is '{"' encoded.
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?"), REDACTED),
    # Opaque secrets Millrace issues.
    (
        re.compile(rf"\b(?:{REFRESH_TOKEN_PREFIX}|{GATEWAY_SECRET_PREFIX})[A-Za-z0-9_-]{{8,}}"),
        REDACTED,
    ),
    # "Bearer <anything>" and "Basic <anything>" credentials.
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}"), rf"\1\2{REDACTED}"),
    # user:password@ in any URL (connection strings).
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@\"'\\]*:)[^\s@/\"'\\]+@"), rf"\1{REDACTED}@"),
    # name=value / "name": "value" pairs whose name says secret (plain, quoted or JSON-escaped).
    (
        re.compile(
            rf"(?i)(\b(?:{_NAMES})(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?)"
            r"(?!\[redacted\])[^\s\"'\\,&;}]+"
        ),
        rf"\1{REDACTED}",
    ),
)

_known: set[str] = set()
_known_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def register_secret(*values: str | None) -> None:
    """Redact these exact values wherever they appear (configured passwords, keys). Values
    shorter than 6 characters are ignored: they would redact ordinary words."""
    global _known_pattern
    with _lock:
        _known.update(v for v in values if v and len(v) >= 6)
        ordered = sorted(_known, key=len, reverse=True)
        _known_pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None


def redact(text: str) -> str:
    """``text`` with every secret it contains replaced by :data:`REDACTED`."""
    known = _known_pattern
    if known is not None:
        text = known.sub(REDACTED, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def register_settings_secrets(model: object) -> None:
    """Register every ``SecretStr`` a settings model holds (nested models included); for a URL,
    its password. Called when settings are built, before anything can log them."""
    from urllib.parse import urlsplit

    from pydantic import BaseModel, SecretStr

    if not isinstance(model, BaseModel):
        return
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            password = urlsplit(secret).password if "://" in secret else None
            register_secret(password if password is not None else secret)
        elif isinstance(value, BaseModel):
            register_settings_secrets(value)
