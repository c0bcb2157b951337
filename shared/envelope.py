"""The message format carried through RabbitMQ (schema version 1).

One AMQP message holds many readings (up to ``INGEST_READINGS_PER_MESSAGE``) so that publisher
confirms are not the bottleneck. Body (JSON)::

    {"v": 1, "source": "http"|"mqtt"|"writer"|"replay", "gateway_id": "GW-01",
     "request_id": "...", "message_id": "...", "received_at_ns": 1765620000000000000,
     "readings": [{"machine_id": "...", "factory_id": "...", "sensor_type": "...",
                   "location": "...", "ts": 1765620000000000000,
                   "fields": {"temperature": 60.5}}],
     "lines": ["sensor_readings,factory_id=...,... temperature=60.5 1765620000000000000"],
     "parts": [[100, "GW-01", "request id"], [100, "GW-02", "another request id"]],
     "dead": {"reason": "...", "error": "...", "first_seen_ns": ..., "attempts": 1, "raw": "..."}}

``dead`` is present only on dead letters; ``raw`` holds an unparseable original payload.

``lines`` (optional) is each reading's InfluxDB line, rendered once by the door that validated
it, so that a writer joins them into its write without touching the readings; a message without
them (an older door's, or one whose ``lines`` do not match its readings) has its lines built by
the writer from ``readings``, which stay the reference for everything else (dead letters,
conflicts, status, the live stream, the alerter).

``parts`` (optional) is present when one message carries several requests (group commit at the
door): consecutive runs of readings with the gateway and request each came from, in order;
``gateway_id``/``request_id`` are then the first part's.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from itertools import chain
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
    lines: list[str] | None = None
    parts: list[tuple[int, str, str]] | None = None  # (readings, gateway_id, request_id)

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
        if self.lines is not None:
            doc["lines"] = self.lines
        if self.parts is not None:
            doc["parts"] = self.parts
        if self.dead is not None:
            doc["dead"] = self.dead
        return orjson.dumps(doc)

    def origin(self, index: int) -> tuple[str, str]:
        """(gateway_id, request_id) of the reading at ``index``."""
        if self.parts:
            end = 0
            for count, gateway_id, request_id in self.parts:
                end += count
                if index < end:
                    return gateway_id, request_id
        return self.gateway_id, self.request_id

    @classmethod
    def merge(cls, envelopes: list[Envelope], routing_key: str) -> Envelope:
        """One envelope carrying the readings (and lines) of several, in order, with where
        each run of readings came from (``parts``)."""
        first = envelopes[0]
        parts = [
            part
            for e in envelopes
            for part in (e.parts or [(len(e.readings), e.gateway_id, e.request_id)])
        ]
        with_lines = all(e.lines is not None for e in envelopes)
        return cls(
            source=first.source,
            readings=list(chain.from_iterable(e.readings for e in envelopes)),
            routing_key=routing_key,
            gateway_id=first.gateway_id,
            request_id=first.request_id,
            lines=list(chain.from_iterable(e.lines or () for e in envelopes))
            if with_lines
            else None,
            parts=parts,
        )

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
            lines=_lines(doc.get("lines"), len(readings)),
            parts=_parts(doc.get("parts"), len(readings)),
        )


def _lines(lines: object, readings: int) -> list[str] | None:
    """The message's own lines when they match its readings one to one (strings, none empty,
    none holding a line break), else None: the writer then builds them from the readings.
    Checked with C-level operations only, no Python per line."""
    if not isinstance(lines, list) or len(lines) != readings or "" in lines:
        return None
    try:
        joined = "".join(lines)
    except TypeError:  # not all strings
        return None
    return None if "\n" in joined else lines


def _parts(parts: object, readings: int) -> list[tuple[int, str, str]] | None:
    """``parts`` when they are well formed and cover the readings exactly, else None."""
    if not isinstance(parts, list):
        return None
    out = []
    for p in parts:
        if not (isinstance(p, list) and len(p) == 3 and type(p[0]) is int and p[0] > 0):
            return None
        out.append((p[0], str(p[1]), str(p[2])))
    return out if sum(p[0] for p in out) == readings else None


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
