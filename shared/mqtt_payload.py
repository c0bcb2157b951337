"""MQTT telemetry payloads, validated with the same :class:`~shared.readings.Reading` model as HTTP.

A message on ``factory/<factory_id>/machine/<machine_id>/telemetry`` carries either one reading::

    {"timestamp": "2025-12-13T10:00:00Z", "sensor_type": "Temperature", "temperature": 72.5}

or several, with optional defaults for all of them::

    {"sensor_type": "Temperature", "location": "Floor 1",
     "readings": [{"timestamp": "...", "temperature": 72.5}, ...]}

``sensor_type``/``location`` left out fall back to the machine's registered values. A message is
accepted or refused as a whole: one bad reading refuses the message, with the exact path.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from shared.errors import MillraceError
from shared.ingest import stored_readings
from shared.machines import Machine
from shared.readings import (
    FieldError,
    Label,
    Reading,
    ValidationContext,
    at_most,
    field_errors,
    max_readings_per_item,
)


class DeadReason(StrEnum):
    """Why an MQTT message went to ``telemetry.dead`` (the ``dead.reason`` of the envelope)."""

    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    SCHEMA = "schema"
    UNKNOWN_MACHINE = "unknown_machine"
    BAD_TOPIC = "bad_topic"
    # The topic names a factory the machine is not registered in.
    WRONG_FACTORY = "wrong_factory"


class MqttReading(Reading):
    """A reading as a gateway publishes it: may name its own sensor type and location."""

    sensor_type: Label | None = None
    location: Label | None = None


class MqttBatch(BaseModel):
    """``{"readings": [...]}``: several readings of the machine named by the topic."""

    model_config = ConfigDict(extra="forbid")

    sensor_type: Label | None = None
    location: Label | None = None
    readings: list[MqttReading] = Field(min_length=1)

    @field_validator("readings", mode="before")
    @classmethod
    def _limit(cls, value: Any, info: ValidationInfo) -> Any:
        return at_most(value, max_readings_per_item(info), "readings per message")


@dataclass(slots=True)
class Payload:
    """A validated payload: its readings, and the defaults a ``{"readings": [...]}`` gave."""

    readings: list[MqttReading]
    sensor_type: str | None = None
    location: str | None = None

    def stored(self, machine: Machine, factory_id: str) -> list[dict[str, Any]]:
        """The readings as the writer stores them (per-reading labels win over the batch's)."""
        return [
            stored
            for r in self.readings
            for stored in stored_readings(
                machine=machine,
                factory_id=factory_id,
                sensor_type=r.sensor_type or self.sensor_type,
                location=r.location or self.location,
                readings=((r.ts_ns(), r.values()),),
            )
        ]


class PayloadError(MillraceError):
    """The payload can never be accepted; ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: DeadReason, error: str, errors: list[FieldError] | None = None):
        super().__init__(error)
        self.reason = reason
        self.error = error
        self.errors = errors or []


def parse_payload(payload: bytes, ctx: ValidationContext) -> Payload:
    """Validate one MQTT payload; a single reading comes back as a list of one.

    Raises :class:`PayloadError` with ``invalid_utf8``, ``invalid_json`` or ``schema``.
    """
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PayloadError(DeadReason.INVALID_UTF8, f"Payload is not valid UTF-8: {e}") from None
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise PayloadError(DeadReason.INVALID_JSON, f"Malformed JSON: {e}") from None
    if not isinstance(doc, dict):
        raise PayloadError(
            DeadReason.SCHEMA,
            f'Payload must be a JSON object (a reading or {{"readings": [...]}}), '
            f"not {type(doc).__name__}",
        )
    try:
        if "readings" in doc:
            batch = MqttBatch.model_validate(doc, context=ctx)
            return Payload(batch.readings, batch.sensor_type, batch.location)
        return Payload([MqttReading.model_validate(doc, context=ctx)])
    except ValidationError as e:
        errors = field_errors(e)
        text = "; ".join(f"{fe.field or 'payload'}: {fe.error}" for fe in errors[:10])
        if len(errors) > 10:
            text += f"; … {len(errors) - 10} more"
        raise PayloadError(DeadReason.SCHEMA, text, errors) from None
