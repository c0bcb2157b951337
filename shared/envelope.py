"""The message format carried through RabbitMQ (schema version 1).

One AMQP message holds many readings (up to ``INGEST_READINGS_PER_MESSAGE``) so that publisher
confirms are not the bottleneck. Body (JSON)::

    {"v": 1, "source": "http"|"mqtt"|"writer"|"replay", "gateway_id": "GW-01",
     "request_id": "...", "message_id": "...", "received_at_ns": 1765620000000000000,
     "readings": [{"machine_id": "...", "factory_id": "...", "sensor_type": "...",
                   "location": "...", "ts": 1765620000000000000,
                   "fields": {"temperature": 60.5}}],
     "dead": {"reason": "...", "error": "...", "first_seen_ns": ..., "attempts": 1, "raw": "..."}}

``dead`` is present only on dead letters; ``raw`` holds an unparseable original payload.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

SCHEMA_VERSION = 1


@dataclass(slots=True)
class Envelope:
    source: str
    readings: list[dict[str, Any]]
    routing_key: str
    gateway_id: str = ""
    request_id: str = ""
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    received_at_ns: int = field(default_factory=time.time_ns)
    dead: dict[str, Any] | None = None

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "source": self.source,
            "gateway_id": self.gateway_id,
            "request_id": self.request_id,
            "message_id": self.message_id,
            "received_at_ns": self.received_at_ns,
            "readings": self.readings,
        }
        if self.dead is not None:
            doc["dead"] = self.dead
        return orjson.dumps(doc)

    def headers(self) -> dict[str, Any]:
        headers: dict[str, Any] = {
            "x-schema-version": SCHEMA_VERSION,
            "x-source": self.source,
            "x-gateway-id": self.gateway_id,
            "x-request-id": self.request_id,
            "x-readings": len(self.readings),
        }
        if self.dead is not None:
            headers["x-dead-reason"] = self.dead.get("reason", "")
        return headers

    @classmethod
    def decode(cls, body: bytes, routing_key: str = "") -> Envelope:
        """Parse a message body. Raises ``ValueError`` for anything not of schema version 1."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"not JSON: {e}") from e
        if not isinstance(doc, dict) or doc.get("v") != SCHEMA_VERSION:
            raise ValueError("unknown envelope schema version")
        readings = doc.get("readings")
        if not isinstance(readings, list):
            raise ValueError("envelope without a readings list")
        return cls(
            source=str(doc.get("source", "")),
            readings=readings,
            routing_key=routing_key,
            gateway_id=str(doc.get("gateway_id", "")),
            request_id=str(doc.get("request_id", "")),
            message_id=str(doc.get("message_id") or uuid.uuid4().hex),
            received_at_ns=int(doc.get("received_at_ns") or 0),
            dead=doc.get("dead"),
        )


def dead_letter(
    *,
    source: str,
    reason: str,
    error: str,
    readings: list[dict[str, Any]] | None = None,
    raw: bytes | None = None,
    gateway_id: str = "",
    request_id: str = "",
    attempts: int = 1,
    extra: dict[str, Any] | None = None,
) -> Envelope:
    """A dead letter with everything an operator needs to act on it (and to replay it)."""
    dead: dict[str, Any] = {
        "reason": reason,
        "error": error,
        "first_seen_ns": time.time_ns(),
        "attempts": attempts,
    }
    if raw is not None:
        dead["raw"] = raw.decode("utf-8", errors="backslashreplace")
    if extra:
        dead.update(extra)
    return Envelope(
        source=source,
        readings=readings or [],
        routing_key="dead",
        gateway_id=gateway_id,
        request_id=request_id,
        dead=dead,
    )
