"""Validate an archived dead letter again, as if it arrived now. Pure functions.

A letter is replayed as a whole or not at all (like an MQTT message at the bridge): every reading
must pass the :class:`~shared.readings.Reading` rules (declared fields, finite values in range,
no timestamp in the future) and name a machine the registry knows *now*. Three shapes:

- letters with readings (the writer's ``influx_rejected``/``malformed``, RabbitMQ's
  ``delivery_limit``): each stored reading is checked again;
- MQTT letters (``invalid_json``, ``schema``, ``unknown_machine``): the raw payload is parsed again
  with the bridge's own rules (:func:`shared.mqtt_payload.parse_payload`), the factory and machine
  coming from the topic as the bridge recorded them;
- any other raw body: replayable only if it is, after all, a telemetry envelope.

What cannot pass raises :class:`Unreplayable` with a reason code, like a fresh dead letter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from shared.envelope import Envelope
from shared.errors import MillraceError
from shared.ingest import stored_readings
from shared.machines import Machine, valid_uuid
from shared.mqtt_payload import PayloadError, parse_payload
from shared.readings import Reading, ValidationContext, field_errors
from shared.timefmt import ns_to_iso

_MAX_ERRORS = 10


class Unreplayable(MillraceError):
    """The letter is still invalid; ``reason`` is a dead-letter reason code."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(f"{reason}: {error}")
        self.reason = reason
        self.error = error


@dataclass(slots=True)
class Letter:
    """What replay needs of a ``dead_letters`` row."""

    id: int
    source: str
    readings: list[Any] = field(default_factory=list)
    raw: str | None = None
    topic: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Letter:
        return cls(
            id=int(row["id"]),
            source=str(row["source"]),
            readings=list(row.get("readings") or []),
            raw=row.get("raw"),
            topic=row.get("topic"),
            details=dict(row.get("details") or {}),
        )

    @property
    def is_mqtt_payload(self) -> bool:
        return not self.readings and self.raw is not None and self.source == "mqtt"


def machine_ids(letter: Letter) -> set[str]:
    """Machine ids to look up in the registry before :func:`replay_readings`."""
    if letter.is_mqtt_payload:
        candidates = [letter.details.get("machine_id")]
    else:
        readings = letter.readings
        if not readings and letter.raw is not None:
            readings = _envelope_readings(letter.raw, strict=False)
        candidates = [r.get("machine_id") for r in readings if isinstance(r, dict)]
    return {c for c in candidates if isinstance(c, str) and valid_uuid(c)}


def replay_readings(
    letter: Letter, machines: Mapping[str, Machine | None], ctx: ValidationContext
) -> list[dict[str, Any]]:
    """The letter's readings, validated again and ready to publish; :class:`Unreplayable`."""
    if letter.readings:
        return [_check(i, r, machines, ctx) for i, r in enumerate(letter.readings)]
    if letter.is_mqtt_payload:
        return _mqtt(letter, machines, ctx)
    if letter.raw is not None:
        readings = _envelope_readings(letter.raw, strict=True)
        return [_check(i, r, machines, ctx) for i, r in enumerate(readings)]
    raise Unreplayable("empty", "The dead letter carries neither readings nor a payload")


def _envelope_readings(raw: str, *, strict: bool) -> list[Any]:
    try:
        readings = Envelope.decode(raw.encode("utf-8")).readings
    except ValueError as e:
        if strict:
            raise Unreplayable(
                "undecodable", f"The payload is not a telemetry envelope: {e}"
            ) from None
        return []
    if strict and not readings:
        raise Unreplayable("empty", "The payload is an envelope without readings")
    return readings


def _check(
    i: int, reading: Any, machines: Mapping[str, Machine | None], ctx: ValidationContext
) -> dict[str, Any]:
    where = f"readings[{i}]"
    if not isinstance(reading, dict):
        raise Unreplayable("schema", f"{where}: not an object")
    mid, factory, ts, values = (
        reading.get(k) for k in ("machine_id", "factory_id", "ts", "fields")
    )
    if not isinstance(mid, str) or not valid_uuid(mid):
        raise Unreplayable("schema", f"{where}.machine_id: not a UUID")
    if not isinstance(factory, str) or not factory:
        raise Unreplayable("schema", f"{where}.factory_id: missing")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise Unreplayable("schema", f"{where}.ts: not an integer (nanoseconds)")
    if not isinstance(values, dict) or "timestamp" in values:
        raise Unreplayable("schema", f"{where}.fields: not an object of sensor values")
    try:
        timestamp = ns_to_iso(ts)
    except (OverflowError, OSError, ValueError):
        raise Unreplayable("schema", f"{where}.ts: out of range") from None
    try:
        checked = Reading.model_validate({**values, "timestamp": timestamp}, context=ctx)
    except ValidationError as e:
        raise Unreplayable("schema", _summary(field_errors(e, (where,)))) from None
    for label in ("sensor_type", "location"):
        if reading.get(label) is not None and not isinstance(reading.get(label), str):
            raise Unreplayable("schema", f"{where}.{label}: not a string")
    machine = machines.get(mid)
    if machine is None:
        raise Unreplayable("unknown_machine", f"Unknown machine: {mid}")
    return stored_readings(
        machine=machine,
        factory_id=factory,
        sensor_type=reading.get("sensor_type") or None,
        location=reading.get("location") or None,
        readings=((ts, checked.values()),),
    )[0]


def _mqtt(
    letter: Letter, machines: Mapping[str, Machine | None], ctx: ValidationContext
) -> list[dict[str, Any]]:
    assert letter.raw is not None
    factory_id = letter.details.get("factory_id")
    machine_id = letter.details.get("machine_id")
    if not isinstance(factory_id, str) or not isinstance(machine_id, str):
        raise Unreplayable("bad_topic", f"The topic {letter.topic!r} names no factory and machine")
    try:
        batch = parse_payload(letter.raw.encode("utf-8"), ctx)
    except PayloadError as e:
        raise Unreplayable(e.reason.value, e.error) from None
    machine = machines.get(machine_id) if valid_uuid(machine_id) else None
    if machine is None:
        raise Unreplayable("unknown_machine", f"Unknown machine: {machine_id}")
    return batch.stored(machine, factory_id)


def _summary(errors: list[Any]) -> str:
    text = "; ".join(f"{fe.field}: {fe.error}" for fe in errors[:_MAX_ERRORS])
    if len(errors) > _MAX_ERRORS:
        text += f"; … {len(errors) - _MAX_ERRORS} more"
    return text
