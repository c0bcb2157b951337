"""Live events and their server-sent-events framing (encoded once, sent to every client)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

READING = "reading"
STATUS = "status"
ALERT = "alert"
TYPES = (READING, STATUS, ALERT)


def ns_to_iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


class LiveEvent:
    """One event for every client of this process. Its SSE frame is encoded on first use and
    then shared by every client that gets it; an event no client wants (most readings, when
    the clients watch a few factories) never builds its data nor its JSON."""

    __slots__ = (
        "_data",
        "_frame",
        "_id",
        "factory_id",
        "location",
        "machine_id",
        "seq",
        "ts_ns",
        "type",
    )

    def __init__(
        self,
        seq: int,
        kind: str,
        machine_id: str,
        factory_id: str,
        location: str,
        ts_ns: int,  # the reading's time (or the change's): what a gap reports
        event_id: str | None,
        data: dict[str, Any] | Callable[[], dict[str, Any]],
    ) -> None:
        self.seq = seq
        self.type = kind
        self.machine_id = machine_id
        self.factory_id = factory_id
        self.location = location
        self.ts_ns = ts_ns
        self._id = event_id
        self._data: dict[str, Any] | Callable[[], dict[str, Any]] | None = data
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        """The whole SSE frame, ready to write (the same bytes for every client)."""
        if self._frame is None:
            data = self._data() if callable(self._data) else self._data
            self._frame = frame(self._id, self.type, data or {})
            self._data = None
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
