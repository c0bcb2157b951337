"""From a message of ``telemetry.dead`` to the row archived in ``dead_letters``. Pure functions.

Three kinds of message arrive on the dead-letter queue:

- dead letters our services publish (:func:`shared.envelope.dead_letter`): an envelope with a
  ``dead`` object (reason, error, first seen, attempts, optional raw payload and extras);
- envelopes RabbitMQ dead-lettered from ``telemetry.writer`` (delivery limit reached, rejected):
  no ``dead`` object, the broker's ``x-death`` header says why;
- anything else (a body that is no envelope): archived as ``undecodable`` with the raw body, so
  that nothing leaves the queue without a trace.

Whatever arrives is made storable: PostgreSQL refuses NUL characters in ``text`` and ``jsonb``,
so they are written as the four characters ``\\x00`` (which keeps invalid JSON invalid).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.envelope import Envelope

UNDECODABLE = "undecodable"
# Longer raw payloads are cut (the cut is recorded in details.raw_truncated_from).
MAX_RAW_CHARS = 4 * 1024 * 1024
MAX_ERROR_CHARS = 64 * 1024
# Reasons become metric labels: keep them short codes, never free text.
_REASON = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_SHORT = 200
# Keys of ``dead`` that have columns of their own; the rest is kept in ``details``.
_DEAD_COLUMNS = {"reason", "error", "first_seen_ns", "attempts", "raw", "topic", "origin_source"}


@dataclass(slots=True)
class LetterRecord:
    """One row of ``dead_letters`` before it is stored."""

    message_id: str
    reason: str
    error: str
    source: str
    first_seen: datetime
    origin_source: str | None = None
    gateway_id: str = ""
    request_id: str = ""
    topic: str | None = None
    readings: list[Any] = field(default_factory=list)
    raw: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1
    # Kept by a stripped record, which has neither details nor readings left to tell it.
    known_factory: str | None = None

    @property
    def factory_id(self) -> str | None:
        """The factory its topic or first reading names; None when none can be told."""
        named = self.known_factory or self.details.get("factory_id")
        if not isinstance(named, str) and self.readings and isinstance(self.readings[0], dict):
            named = self.readings[0].get("factory_id")
        return named[:100] if isinstance(named, str) and named else None

    def stripped(self, why: str) -> LetterRecord:
        """The same letter without its bulky parts, for when PostgreSQL refuses the full row."""
        return LetterRecord(
            message_id=self.message_id,
            reason=self.reason,
            error=self.error,
            source=self.source,
            first_seen=self.first_seen,
            origin_source=self.origin_source,
            gateway_id=self.gateway_id,
            request_id=self.request_id,
            topic=self.topic,
            details={"archive_error": clean(why)[: _SHORT * 5]},
            known_factory=self.factory_id,
            attempts=self.attempts,
        )


def clean(value: Any) -> Any:
    """``value`` with every string storable in PostgreSQL (no NUL, no lone surrogate)."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\\x00")
        if not value.isascii():
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {str(clean(k)): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def _text(value: Any, limit: int = _SHORT) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    return str(clean(value if isinstance(value, str) else str(value)))[:limit]


def _reason(value: Any) -> str:
    text = _text(value, 1000)
    return text if _REASON.fullmatch(text) else "invalid_reason"


def _from_ns(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value / 1e9, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return min(value, 2**31 - 1)


def _raw(value: Any, details: dict[str, Any]) -> str | None:
    if value is None:
        return None
    text = clean(value) if isinstance(value, str) else _text(value, MAX_RAW_CHARS + 1)
    if len(text) > MAX_RAW_CHARS:
        details["raw_truncated_from"] = len(text)
        text = text[:MAX_RAW_CHARS]
    return str(text)


def _x_death(headers: Mapping[str, Any]) -> dict[str, Any] | None:
    """The newest entry of RabbitMQ's ``x-death`` header, JSON-safe."""
    deaths = headers.get("x-death")
    if not isinstance(deaths, list | tuple) or not deaths or not isinstance(deaths[0], Mapping):
        return None
    first = deaths[0]
    out: dict[str, Any] = {
        "reason": _text(first.get("reason", "")),
        "queue": _text(first.get("queue", "")),
        "exchange": _text(first.get("exchange", "")),
        "count": first.get("count") if isinstance(first.get("count"), int) else None,
        "routing_keys": [_text(k) for k in first.get("routing-keys", []) or []][:10],
    }
    when = first.get("time")
    if isinstance(when, datetime):
        out["time"] = (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()
    return out


def letter_id(message_id: str | None, body: bytes) -> str:
    """The idempotency key: the AMQP message id, else a digest of the body."""
    if message_id:
        return _text(message_id)
    return "sha256:" + hashlib.sha256(body).hexdigest()


def record_from_message(
    body: bytes,
    *,
    message_id: str | None,
    headers: Mapping[str, Any],
    routing_key: str = "",
    now: datetime,
) -> LetterRecord:
    """The archive row for one message of the dead-letter queue. Never raises."""
    key = letter_id(message_id, body)
    try:
        envelope = Envelope.decode(body, routing_key)
    except ValueError as e:
        rec = undecodable_record(body, message_id, now, f"Not a telemetry envelope: {e}")
        rec.source = _text(headers.get("x-source") or "unknown", 32)
        rec.gateway_id = _text(headers.get("x-gateway-id") or "")
        if routing_key:
            rec.details["routing_key"] = _text(routing_key)
        return rec
    dead = envelope.dead if isinstance(envelope.dead, dict) else None
    if dead is not None:
        return _from_dead_letter(key, envelope, dead, now)
    return _from_broker(key, envelope, headers, now)


def undecodable_record(
    body: bytes, message_id: str | None, now: datetime, error: str = "Unreadable dead letter"
) -> LetterRecord:
    """A body kept as it came (as text), for an operator to look at; it cannot be replayed."""
    details: dict[str, Any] = {}
    return LetterRecord(
        message_id=letter_id(message_id, body),
        reason=UNDECODABLE,
        error=_text(error, MAX_ERROR_CHARS),
        source="unknown",
        first_seen=now,
        raw=_raw(body.decode("utf-8", "backslashreplace"), details),
        details=details,
    )


def _from_dead_letter(
    key: str, envelope: Envelope, dead: dict[str, Any], now: datetime
) -> LetterRecord:
    details = {str(k): clean(v) for k, v in dead.items() if k not in _DEAD_COLUMNS}
    topic = dead.get("topic")
    origin = dead.get("origin_source")
    return LetterRecord(
        message_id=key,
        reason=_reason(dead.get("reason") or "unspecified"),
        error=_text(dead.get("error") or "", MAX_ERROR_CHARS),
        source=_text(envelope.source or "unknown", 32),
        first_seen=_from_ns(dead.get("first_seen_ns")) or now,
        origin_source=_text(origin, 32) if origin else None,
        gateway_id=_text(envelope.gateway_id),
        request_id=_text(envelope.request_id),
        topic=_text(topic, 1000) if topic is not None else None,
        readings=clean(envelope.readings),
        raw=_raw(dead.get("raw"), details),
        details=details,
        attempts=_positive_int(dead.get("attempts")) or 1,
    )


def _from_broker(
    key: str, envelope: Envelope, headers: Mapping[str, Any], now: datetime
) -> LetterRecord:
    """An envelope RabbitMQ itself dead-lettered (the writer could not store it in time)."""
    death = _x_death(headers)
    why = death["reason"] if death and death["reason"] else "dead_lettered"
    queue = death["queue"] if death else ""
    deliveries = _positive_int(headers.get("x-delivery-count"))
    error = f"Dead-lettered by RabbitMQ ({why})" + (f" from queue {queue}" if queue else "")
    if deliveries:
        error += f" after {deliveries} deliveries"
    first_seen = now
    if death and "time" in death:
        first_seen = datetime.fromisoformat(death["time"])
    details: dict[str, Any] = {"routing_key": _text(envelope.routing_key)}
    if death:
        details["x_death"] = death
    if envelope.received_at_ns:
        details["received_at_ns"] = envelope.received_at_ns
    return LetterRecord(
        message_id=key,
        reason=_reason(why),
        error=error,
        source="writer",
        first_seen=first_seen,
        origin_source=_text(envelope.source, 32) or None,
        gateway_id=_text(envelope.gateway_id),
        request_id=_text(envelope.request_id),
        readings=clean(envelope.readings),
        details=details,
        attempts=deliveries or (death or {}).get("count") or 1,
    )
