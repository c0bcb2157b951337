"""What gateways send: MQTT topics and payloads, HTTP batches, and deliberately bad input."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

TOPIC = "factory/{factory_id}/machine/{machine_id}/telemetry"

# Dead-letter reason codes of the MQTT bridge that a gateway can provoke.
FAULT_KINDS = ("invalid_utf8", "invalid_json", "schema", "unknown_machine", "bad_topic")


def telemetry_topic(factory_id: str, machine_id: str, template: str = TOPIC) -> str:
    return template.format(factory_id=factory_id, machine_id=machine_id)


def iso(ts_us: int) -> str:
    """Microseconds since the epoch → ``2025-12-13T10:00:00.123456Z``."""
    return datetime.fromtimestamp(ts_us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def reading(ts_us: int, values: dict[str, float], sensor_type: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"timestamp": iso(ts_us)}
    if sensor_type:
        doc["sensor_type"] = sensor_type
    doc.update(values)
    return doc


def mqtt_payload(readings: list[dict[str, Any]]) -> bytes:
    """One reading as itself, several as ``{"readings": [...]}``."""
    if len(readings) == 1:
        return orjson.dumps(readings[0])
    return orjson.dumps({"readings": readings})


def http_batch(
    gateway_id: str, factory_id: str, items: list[tuple[str, list[dict[str, Any]]]]
) -> dict[str, Any]:
    """``POST /api/v1/data/ingest`` body: (machine id, readings) per item."""
    return {
        "gateway_id": gateway_id,
        "factory_id": factory_id,
        "timestamp": iso(int(datetime.now(UTC).timestamp() * 1_000_000)),
        "batch": [
            {"machine_id": machine_id, "readings": [_plain(r) for r in readings]}
            for machine_id, readings in items
        ],
    }


def _plain(r: dict[str, Any]) -> dict[str, Any]:
    # sensor_type sits on the item in HTTP batches, not on the reading.
    return {k: v for k, v in r.items() if k != "sensor_type"}


_SCHEMA_FAULTS: tuple[Any, ...] = (
    lambda ts: {"temperature": 60.0},  # no timestamp
    lambda ts: {"timestamp": "2025-13-45T99:00:00Z", "temperature": 60.0},
    lambda ts: {"timestamp": ts[:19], "temperature": 60.0},  # no time zone
    lambda ts: {"timestamp": ts},  # no sensor value
    lambda ts: {"timestamp": ts, "temperature": 1e6},  # out of range
    lambda ts: {"timestamp": ts, "temperature": "hot"},
    lambda ts: {"timestamp": ts, "temperature": True},
    lambda ts: {"timestamp": ts, "humidity": 40.0},  # undeclared field
    lambda ts: {"readings": []},
    lambda ts: {"readings": [{"timestamp": ts, "temperature": 60.0}, {"timestamp": ts}]},
    lambda ts: [{"timestamp": ts, "temperature": 60.0}],  # not an object
    lambda ts: {"timestamp": "2999-01-01T00:00:00Z", "temperature": 60.0},  # far future
)


def fault(
    kind: str,
    factory_id: str,
    machine_id: str,
    ts_us: int,
    rng: random.Random,
    template: str = TOPIC,
) -> tuple[str, bytes]:
    """(topic, payload) of a message the bridge must dead-letter with reason ``kind``."""
    ts = iso(ts_us)
    good = orjson.dumps({"timestamp": ts, "temperature": 60.0})
    topic = telemetry_topic(factory_id, machine_id, template)
    if kind == "invalid_utf8":
        return topic, b'{"timestamp": "' + ts.encode() + b'", "note": "\xff\xfe\xc3\x28"}'
    if kind == "invalid_json":
        broken = rng.choice((b"{", b"not json", b'{"timestamp": }', good[:-1], b"\x00"))
        return topic, broken
    if kind == "schema":
        return topic, orjson.dumps(rng.choice(_SCHEMA_FAULTS)(ts))
    if kind == "unknown_machine":
        unknown = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return telemetry_topic(factory_id, unknown, template), good
    if kind == "bad_topic":
        # Still matches factory/+/machine/+/telemetry, but the factory id is not a valid one (no
        # "." in it: the edge would route a dotted level as an extra word, to no queue at all).
        return telemetry_topic(f"{factory_id} bad factory!", machine_id, template), good
    raise ValueError(f"unknown fault kind {kind!r} (expected one of {', '.join(FAULT_KINDS)})")
