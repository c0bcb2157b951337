"""Live events and their server-sent-events framing (encoded once, sent to every client)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

READING = "reading"
STATUS = "status"
ALERT = "alert"
TYPES = (READING, STATUS, ALERT)


def ns_to_iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True, eq=False)
class LiveEvent:
    """One event for every client of this process. Its SSE frame is encoded on first use and
    then shared by every client that gets it; an event no client wants (most readings, when
    the clients watch a few factories) never builds its data nor its JSON."""

    seq: int
    type: str
    machine_id: str
    factory_id: str
    location: str
    ts_ns: int  # the reading's time (or the change's): what a gap reports
    event_id: str | None
    data: dict[str, Any] | Callable[[], dict[str, Any]] | None  # dropped once encoded
    _frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        """The whole SSE frame, ready to write (the same bytes for every client)."""
        if self._frame is None:
            data = self.data() if callable(self.data) else self.data
            self._frame = frame(self.event_id, self.type, data or {})
            self.data = None
        return self._frame


def frame(event_id: str | None, event_type: str, data: dict[str, Any]) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event_type}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def reading_data(reading: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "machine_id": reading.get("machine_id"),
        "factory_id": reading.get("factory_id"),
        "location": reading.get("location"),
        "sensor_type": reading.get("sensor_type"),
        "timestamp": ns_to_iso(int(reading["ts"])),
        "fields": reading.get("fields") or {},
        "source": source,
    }


HEARTBEAT = b": keep-alive\n\n"
