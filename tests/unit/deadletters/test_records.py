"""From a dead-letter queue message to the archived row: every kind of body, made storable."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from services.query_api.deadletters.records import (
    MAX_RAW_CHARS,
    UNDECODABLE,
    LetterRecord,
    clean,
    letter_id,
    record_from_message,
)
from shared.envelope import Envelope, dead_letter

NOW = datetime(2025, 12, 13, 10, 0, tzinfo=UTC)
READING = {
    "machine_id": "e21c1cfa-4af9-4ccc-a53c-78a967195439",
    "factory_id": "f1",
    "sensor_type": "Temperature",
    "location": "Floor 1",
    "ts": 1_765_620_000_000_000_000,
    "fields": {"temperature": 60.5},
}


def record(env: Envelope, headers: dict[str, object] | None = None) -> LetterRecord:
    return record_from_message(
        env.encode(), message_id=env.message_id, headers=headers or {}, now=NOW
    )


def test_mqtt_dead_letter_keeps_payload_topic_and_extras() -> None:
    env = dead_letter(
        source="mqtt",
        reason="schema",
        error="readings[0].timestamp: Field required",
        raw=b'{"readings": [{"speed": 1}]}',
        gateway_id="bridge-1",
        request_id="req-1",
        extra={
            "topic": "factory/f1/machine/m/telemetry",
            "qos": 1,
            "factory_id": "f1",
            "machine_id": "m",
            "errors": [{"field": "readings[0].timestamp", "error": "Field required"}],
        },
    )
    rec = record(env)
    assert (rec.message_id, rec.reason, rec.source) == (env.message_id, "schema", "mqtt")
    assert (rec.gateway_id, rec.request_id) == ("bridge-1", "req-1")
    assert rec.topic == "factory/f1/machine/m/telemetry"
    assert rec.raw == '{"readings": [{"speed": 1}]}'
    assert rec.readings == [] and rec.attempts == 1 and rec.origin_source is None
    assert rec.details == {
        "qos": 1,
        "factory_id": "f1",
        "machine_id": "m",
        "errors": [{"field": "readings[0].timestamp", "error": "Field required"}],
    }
    assert env.dead is not None
    assert rec.first_seen == datetime.fromtimestamp(env.dead["first_seen_ns"] / 1e9, UTC)


def test_writer_dead_letter_keeps_readings_and_origin() -> None:
    env = dead_letter(
        source="writer",
        reason="influx_rejected",
        error="field type conflict",
        readings=[READING],
        attempts=3,
        extra={"origin_source": "mqtt", "message_id": "orig-1"},
    )
    rec = record(env)
    assert (rec.reason, rec.source, rec.origin_source) == ("influx_rejected", "writer", "mqtt")
    assert rec.readings == [READING] and rec.raw is None and rec.attempts == 3
    assert rec.details == {"message_id": "orig-1"}


def test_envelope_dead_lettered_by_the_broker_reads_x_death() -> None:
    env = Envelope(source="http", readings=[READING], routing_key="reading.f1.m", gateway_id="G")
    death_time = datetime(2025, 12, 13, 9, 0)
    headers = {
        "x-delivery-count": 20,
        "x-death": [
            {
                "count": 1,
                "reason": "delivery_limit",
                "queue": "telemetry.writer",
                "exchange": "telemetry",
                "routing-keys": [b"reading.f1.m"],
                "time": death_time,
            }
        ],
    }
    rec = record_from_message(
        env.encode(), message_id=env.message_id, headers=headers, routing_key="dead", now=NOW
    )
    assert (rec.reason, rec.source, rec.origin_source) == ("delivery_limit", "writer", "http")
    assert rec.error == (
        "Dead-lettered by RabbitMQ (delivery_limit) from queue telemetry.writer after 20 deliveries"
    )
    assert rec.attempts == 20 and rec.readings == [READING] and rec.gateway_id == "G"
    assert rec.first_seen == death_time.replace(tzinfo=UTC)
    assert rec.details["x_death"]["routing_keys"] == ["reading.f1.m"]


def test_envelope_without_x_death_still_gets_a_reason() -> None:
    env = Envelope(source="http", readings=[], routing_key="")
    rec = record(env)
    assert (rec.reason, rec.first_seen, rec.attempts) == ("dead_lettered", NOW, 1)


def test_undecodable_body_is_archived_raw_and_keyed_by_content() -> None:
    body = b"\x00\xff{not json"
    rec = record_from_message(
        body, message_id=None, headers={"x-source": "mqtt", "x-gateway-id": "g"}, now=NOW
    )
    assert (rec.reason, rec.source, rec.gateway_id) == (UNDECODABLE, "mqtt", "g")
    assert rec.raw == "\\x00\\xff{not json"
    assert rec.error.startswith("Not a telemetry envelope: not JSON")
    assert rec.message_id == letter_id(None, body) == letter_id("", body)
    assert rec.message_id != letter_id(None, body + b" ")
    wrong_version = orjson.dumps({"v": 2, "readings": []})
    assert record_from_message(wrong_version, message_id="m", headers={}, now=NOW).reason == (
        UNDECODABLE
    )


def test_reasons_are_codes_and_bad_fields_are_tolerated() -> None:
    env = dead_letter(source="mqtt", reason="no such\nreason " * 10, error="e")
    assert env.dead is not None
    env.dead.update(first_seen_ns="yesterday", attempts=-1)
    rec = record(env)
    assert (rec.reason, rec.first_seen, rec.attempts) == ("invalid_reason", NOW, 1)


def test_nul_and_lone_surrogates_become_text() -> None:
    assert clean("a\x00b") == "a\\x00b"
    assert clean("\ud800x") == "\\ud800x"
    assert clean({"k\x00": ["\x00", 1, None]}) == {"k\\x00": ["\\x00", 1, None]}
    assert clean("Grüße") == "Grüße"


def test_huge_raw_payload_is_cut_and_the_cut_recorded() -> None:
    env = dead_letter(source="mqtt", reason="schema", error="e", raw=b"x" * (MAX_RAW_CHARS + 10))
    rec = record(env)
    assert rec.raw is not None and len(rec.raw) == MAX_RAW_CHARS
    assert rec.details["raw_truncated_from"] == MAX_RAW_CHARS + 10


def test_stripped_record_keeps_what_identifies_the_letter() -> None:
    env = dead_letter(source="writer", reason="malformed", error="e", readings=[READING])
    rec = record(env).stripped("value too long")
    assert (rec.message_id, rec.reason, rec.readings, rec.raw) == (
        env.message_id,
        "malformed",
        [],
        None,
    )
    assert rec.details == {"archive_error": "value too long"}
