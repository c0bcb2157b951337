"""Replay validates a dead letter again: readings, raw MQTT payloads, envelopes."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.query_api.deadletters.replay import (
    Letter,
    Unreplayable,
    machine_ids,
    ns_to_iso,
    replay_readings,
)
from shared.envelope import Envelope
from shared.machines import Machine
from shared.readings import ValidationContext, to_ns

MID = str(uuid.uuid4())
MACHINE = Machine(MID, "Press 1", "Hall 2", "Pressure", "active", "", "")
KNOWN = {MID: MACHINE}
NOW_NS = time.time_ns()
TS = NOW_NS - 3600 * 10**9
TODAY = datetime.fromtimestamp(TS // 10**9, UTC).isoformat()
CTX = ValidationContext(extra_fields={"vibration": (0.0, 500.0)}, now_ns=NOW_NS)


def reading(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "machine_id": MID,
        "factory_id": "f1",
        "sensor_type": "Temperature",
        "location": "Floor 1",
        "ts": TS,
        "fields": {"temperature": 60.5},
    }
    r.update(over)
    return r


def mqtt(payload: Any, machine_id: str = MID, **details: Any) -> Letter:
    raw = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
    return Letter(
        id=1,
        source="mqtt",
        raw=raw,
        topic=f"factory/f1/machine/{machine_id}/telemetry",
        details={"factory_id": "f1", "machine_id": machine_id, **details},
    )


def refused(letter: Letter, known: dict[str, Machine] | None = None) -> Unreplayable:
    with pytest.raises(Unreplayable) as caught:
        replay_readings(letter, KNOWN if known is None else known, CTX)
    return caught.value


def test_stored_readings_pass_again_unchanged() -> None:
    letter = Letter(id=1, source="writer", readings=[reading(), reading(fields={"vibration": 3})])
    assert machine_ids(letter) == {MID}
    out = replay_readings(letter, KNOWN, CTX)
    assert out == [reading(), reading(fields={"vibration": 3.0})]


def test_missing_labels_come_from_the_registry() -> None:
    letter = Letter(id=1, source="writer", readings=[reading(sensor_type=None, location="")])
    [out] = replay_readings(letter, KNOWN, CTX)
    assert (out["sensor_type"], out["location"]) == ("Pressure", "Hall 2")


def test_unknown_machine_is_refused_as_unknown_machine() -> None:
    e = refused(Letter(id=1, source="writer", readings=[reading()]), known={})
    assert (e.reason, e.error) == ("unknown_machine", f"Unknown machine: {MID}")


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"fields": {"temperature": 5000.0}}, "readings[0].temperature: Value out of plausible"),
        ({"fields": {"humidity": 1.0}}, "Unknown sensor field 'humidity'"),
        ({"fields": {}}, "A reading needs at least one sensor value"),
        ({"fields": {"timestamp": 1}}, "readings[0].fields: not an object"),
        ({"ts": NOW_NS + 3600 * 10**9}, "Timestamp is too far in the future"),
        ({"ts": NOW_NS - 400 * 86_400 * 10**9}, "older than the raw data retention"),
        ({"ts": "yesterday"}, "readings[0].ts: not an integer"),
        ({"ts": 10**30}, "readings[0].ts: out of range"),
        ({"machine_id": "press-1"}, "readings[0].machine_id: not a UUID"),
        ({"factory_id": ""}, "readings[0].factory_id: missing"),
        ({"location": 5}, "readings[0].location: not a string"),
    ],
)
def test_invalid_readings_are_refused_as_schema(over: dict[str, Any], error: str) -> None:
    letter = Letter(id=1, source="writer", readings=[reading(), reading(**over)])
    e = refused(letter)
    assert e.reason == "schema"
    assert error.replace("[0]", "[1]") in e.error


def test_one_bad_reading_refuses_the_whole_letter() -> None:
    letter = Letter(id=1, source="writer", readings=[reading(), "nonsense"])
    assert refused(letter).error == "readings[1]: not an object"


def test_mqtt_payload_is_parsed_again_with_the_bridge_rules() -> None:
    single = mqtt({"timestamp": ns_to_iso(TS), "temperature": 70.0, "sensor_type": "Thermo"})
    [out] = replay_readings(single, KNOWN, CTX)
    assert out["fields"] == {"temperature": 70.0} and out["sensor_type"] == "Thermo"
    assert (out["factory_id"], out["location"], out["machine_id"]) == ("f1", "Hall 2", MID)
    assert abs(out["ts"] - TS) < 1000  # microsecond precision of the ISO timestamp

    day = datetime.fromtimestamp(NOW_NS // 10**9, UTC).date() - timedelta(days=1)
    batch = mqtt(
        {
            "location": "Bay 4",
            "readings": [
                {"timestamp": f"{day}T10:00:00Z", "speed": 1400},
                {"timestamp": f"{day}T10:00:01+01:00", "pressure": 101.5, "location": "B5"},
            ],
        }
    )
    out2 = replay_readings(batch, KNOWN, CTX)
    assert [r["location"] for r in out2] == ["Bay 4", "B5"]
    ten = to_ns(datetime(day.year, day.month, day.day, 10, tzinfo=UTC))
    assert [r["ts"] for r in out2] == [ten, ten - 3599 * 10**9]
    assert [r["sensor_type"] for r in out2] == ["Pressure", "Pressure"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{", "invalid_json"),
        ("[1, 2]", "schema"),
        ('{"timestamp": "2025-13-45", "temperature": 1}', "schema"),
        ('{"readings": []}', "schema"),
    ],
)
def test_mqtt_payload_still_invalid_keeps_the_bridge_reason(raw: str, reason: str) -> None:
    assert refused(mqtt(raw)).reason == reason


def test_mqtt_payload_for_a_machine_still_unknown() -> None:
    other = str(uuid.uuid4())
    letter = mqtt({"timestamp": TODAY, "speed": 1}, machine_id=other)
    assert machine_ids(letter) == {other}
    assert refused(letter).reason == "unknown_machine"
    not_uuid = mqtt({"timestamp": TODAY, "speed": 1}, machine_id="press-7")
    assert machine_ids(not_uuid) == set()
    assert refused(not_uuid).error == "Unknown machine: press-7"


def test_mqtt_letter_without_topic_ids_cannot_be_replayed() -> None:
    letter = Letter(id=1, source="mqtt", raw="{}", topic="factory/x/telemetry", details={})
    e = refused(letter)
    assert e.reason == "bad_topic" and "factory/x/telemetry" in e.error


def test_raw_envelope_is_replayable_and_anything_else_is_not() -> None:
    env = Envelope(source="http", readings=[reading()], routing_key="")
    letter = Letter(id=1, source="writer", raw=env.encode().decode())
    assert machine_ids(letter) == {MID}
    assert replay_readings(letter, KNOWN, CTX) == [reading()]

    garbage = Letter(id=1, source="unknown", raw="\\x00garbage")
    assert machine_ids(garbage) == set()
    assert refused(garbage).reason == "undecodable"
    assert refused(Letter(id=1, source="writer")).reason == "empty"
