"""MQTT payloads through the shared reading validation: reasons and exact paths."""

from __future__ import annotations

import dataclasses
import time

import orjson
import pytest

from shared.mqtt_payload import DeadReason, PayloadError, parse_payload
from shared.readings import ValidationContext

CTX = ValidationContext(extra_fields={"vibration": (0.0, 500.0)}, max_readings_per_item=3)
TS = "2025-12-13T10:00:00Z"


# "Now" for these tests, so the fixed timestamps below never age out of the retention.
NOW_NS = 1_765_627_200_000_000_000  # 2025-12-13T12:00:00Z


def ctx() -> ValidationContext:
    return dataclasses.replace(CTX, now_ns=NOW_NS)


def reason_of(payload: bytes) -> tuple[DeadReason, PayloadError]:
    with pytest.raises(PayloadError) as info:
        parse_payload(payload, ctx())
    return info.value.reason, info.value


def test_single_reading_is_a_batch_of_one() -> None:
    doc = {"timestamp": TS, "sensor_type": "Temperature", "temperature": 72.5, "speed": 1400}
    batch = parse_payload(orjson.dumps(doc), ctx())
    assert len(batch.readings) == 1
    r = batch.readings[0]
    assert r.sensor_type == "Temperature"
    assert r.values() == {"temperature": 72.5, "speed": 1400.0}
    assert r.ts_ns() == 1765620000 * 10**9


def test_readings_list_with_defaults_and_declared_extra_field() -> None:
    doc = {
        "location": "Floor 1",
        "readings": [
            {"timestamp": TS, "temperature": 60},
            {"timestamp": "2025-12-13T11:00:00+01:00", "vibration": 3.5, "location": "Bay 2"},
        ],
    }
    batch = parse_payload(orjson.dumps(doc), ctx())
    assert batch.location == "Floor 1"
    assert [r.location for r in batch.readings] == [None, "Bay 2"]
    assert batch.readings[1].values() == {"vibration": 3.5}
    assert batch.readings[0].ts_ns() == batch.readings[1].ts_ns()


def test_invalid_utf8() -> None:
    reason, _ = reason_of(b'{"timestamp": "\xff\xfe"}')
    assert reason is DeadReason.INVALID_UTF8


@pytest.mark.parametrize("payload", [b"", b"{", b"not json", b'{"a": }', b"\x00"])
def test_invalid_json(payload: bytes) -> None:
    reason, _ = reason_of(payload)
    assert reason is DeadReason.INVALID_JSON


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"temperature": 60.0}, "timestamp"),
        ({"timestamp": "2025-13-45T10:00:00Z", "temperature": 1.0}, "timestamp"),
        ({"timestamp": "2025-12-13T10:00:00", "temperature": 1.0}, "timestamp"),
        ({"timestamp": TS}, "payload"),  # no value: a model-level error
        ({"timestamp": TS, "temperature": 1e6}, "temperature"),
        ({"timestamp": TS, "temperature": "hot"}, "temperature"),
        ({"timestamp": TS, "temperature": True}, "temperature"),
        ({"timestamp": TS, "humidity": 4.0}, "payload"),
        ({"readings": []}, "readings"),
        ({"readings": [{"timestamp": TS, "speed": 1}, {"timestamp": TS}]}, "readings[1]"),
        ({"readings": [{"timestamp": TS, "speed": 1}] * 4}, "readings"),  # over the limit
        ({"readings": [{"timestamp": TS, "speed": 1}], "gateway": "x"}, "gateway"),
        ({"timestamp": "2999-01-01T00:00:00Z", "temperature": 1.0}, "timestamp"),
    ],
)
def test_schema_errors_name_the_place(doc: dict[str, object], field: str) -> None:
    reason, error = reason_of(orjson.dumps(doc))
    assert reason is DeadReason.SCHEMA
    assert error.errors, error.error
    assert error.error.startswith(field), error.error


@pytest.mark.parametrize("doc", [[{"timestamp": TS, "temperature": 1.0}], 42, "x", None])
def test_json_that_is_not_an_object_is_a_schema_error(doc: object) -> None:
    reason, _ = reason_of(orjson.dumps(doc))
    assert reason is DeadReason.SCHEMA


def test_future_check_uses_the_context_clock() -> None:
    soon = time.time() + 60
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(soon))
    assert parse_payload(orjson.dumps({"timestamp": stamp, "speed": 1.0}), CTX.with_now())
