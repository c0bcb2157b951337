"""From validated readings to confirmed envelopes: the part both ingest doors share.

Enrichment fills ``sensor_type``/``location`` from the registry when the gateway left them out
and stamps ``factory_id``; each reading's InfluxDB line can be rendered here, once, where the
values are known to be valid floats; readings are packed many to an AMQP message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.broker import routing_key
from shared.envelope import Envelope
from shared.lineprotocol import SeriesLines
from shared.machines import Machine

# The doors' line renderer: one per process, bounded.
LINES = SeriesLines()


@dataclass(slots=True)
class Rejection:
    """A machine (or message) refused as a whole, with why."""

    index: int | None
    machine_id: str
    reason: str
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"machine_id": self.machine_id, "reason": self.reason}
        if self.index is not None:
            out["index"] = self.index
        if self.errors:
            out["errors"] = self.errors
        return out


def stored_readings(
    *,
    machine: Machine,
    factory_id: str,
    sensor_type: str | None,
    location: str | None,
    readings: Iterable[tuple[int, dict[str, float]]],
    lines: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Reading dicts as the writer expects them (see :mod:`shared.envelope`); with ``lines``,
    each reading's InfluxDB line is appended to it too (values must be finite floats)."""
    st = sensor_type or machine.sensor_type
    loc = location or machine.location
    if lines is not None:
        readings = list(readings)
        series = LINES.series(machine.id, factory_id, st, loc)
        field_set = LINES.field_set
        lines.extend([f"{series} {field_set(values)} {ts}" for ts, values in readings])
    return [
        {
            "machine_id": machine.id,
            "factory_id": factory_id,
            "sensor_type": st,
            "location": loc,
            "ts": ts,
            "fields": values,
        }
        for ts, values in readings
    ]


def pack(
    readings: list[dict[str, Any]],
    *,
    source: str,
    gateway_id: str,
    request_id: str,
    per_message: int,
    lines: list[str] | None = None,
) -> list[Envelope]:
    """Chunk readings (and their ``lines``, when given) into envelopes of at most
    ``per_message`` readings.

    The routing key names the machine when a chunk holds one machine; a chunk mixing machines
    is routed as ``reading.<factory>.mixed`` (the writer queue binds ``reading.#``).
    """
    out = []
    for start in range(0, len(readings), per_message):
        chunk = readings[start : start + per_message]
        first = chunk[0]
        same_machine = all(r["machine_id"] == first["machine_id"] for r in chunk)
        key = routing_key(first["factory_id"], first["machine_id"] if same_machine else "mixed")
        out.append(
            Envelope(
                source=source,
                readings=chunk,
                routing_key=key,
                gateway_id=gateway_id,
                request_id=request_id,
                lines=lines[start : start + per_message] if lines is not None else None,
            )
        )
    return out
