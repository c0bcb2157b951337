"""From a group of MQTT messages to envelopes and dead letters (no broker, no database)."""

from __future__ import annotations

import random
import uuid

import orjson
import pytest

from services.mqtt_bridge.link import Inbound
from services.mqtt_bridge.triage import classify, dead_letters, envelopes, resolve
from shared.machines import Machine
from shared.mqtt_payload import DeadReason
from shared.mqtt_topics import TopicTemplate
from shared.readings import ValidationContext
from tools.simulator.payloads import FAULT_KINDS, fault, telemetry_topic

TEMPLATE = TopicTemplate("factory/{factory_id}/machine/{machine_id}/telemetry")
TS = "2025-12-13T10:00:00Z"


def machine(sensor_type: str = "Temperature", factory_id: str = "f1") -> Machine:
    return Machine(str(uuid.uuid4()), "CNC-1", "Hall 1", sensor_type, "active", "", "", factory_id)


def message(topic: str | None, payload: bytes | dict[str, object], mid: int = 1) -> Inbound:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Inbound(mid, topic, body)


# "Now" for these tests, so the fixed timestamps below never age out of the retention.
NOW_NS = 1_765_627_200_000_000_000  # 2025-12-13T12:00:00Z


def ctx() -> ValidationContext:
    return ValidationContext(now_ns=NOW_NS)


def test_valid_readings_are_enriched_from_the_registry() -> None:
    m = machine()
    msgs = [
        message(telemetry_topic("f1", m.id), {"timestamp": TS, "temperature": 61.5}),
        message(
            telemetry_topic("f1", m.id),
            {
                "location": "Bay 9",
                "readings": [{"timestamp": TS, "sensor_type": "Vib", "speed": 9}],
            },
            mid=2,
        ),
    ]
    triage = classify(msgs, TEMPLATE, ctx())
    assert triage.machine_ids() == [m.id]
    readings, published, dead = resolve(triage, {m.id: m})
    assert not dead and published == msgs
    assert readings[0] == {
        "machine_id": m.id,
        "factory_id": "f1",
        "sensor_type": "Temperature",
        "location": "Hall 1",
        "ts": 1765620000 * 10**9,
        "fields": {"temperature": 61.5},
    }
    assert (readings[1]["sensor_type"], readings[1]["location"]) == ("Vib", "Bay 9")


def test_envelopes_carry_the_machine_routing_key_and_source() -> None:
    a, b = machine(), machine()
    msgs = [message(telemetry_topic("f1", x.id), {"timestamp": TS, "speed": 1}) for x in (a, b, a)]
    readings, _, _ = resolve(classify(msgs, TEMPLATE, ctx()), {a.id: a, b.id: b})
    envs = envelopes(readings, gateway_id="bridge-1", request_id="r1", per_message=2)
    keys = sorted(e.routing_key for e in envs)
    first, second = sorted((a.id, b.id))
    assert keys == sorted([f"reading.f1.{first}", f"reading.f1.{second}"])
    assert all(e.source == "mqtt" and e.request_id == "r1" for e in envs)
    assert sum(len(e.readings) for e in envs) == 3


def test_factories_never_share_an_envelope() -> None:
    a, b = machine(factory_id="f1"), machine(factory_id="f2")
    msgs = [
        message(telemetry_topic(m.factory_id, m.id), {"timestamp": TS, "speed": 1}) for m in (a, b)
    ]
    readings, _, _ = resolve(classify(msgs, TEMPLATE, ctx()), {a.id: a, b.id: b})
    envs = envelopes(readings, gateway_id="", request_id="", per_message=1000)
    assert sorted(e.routing_key for e in envs) == sorted(
        [f"reading.f1.{a.id}", f"reading.f2.{b.id}"]
    )


def test_a_topic_naming_another_factory_than_the_registry_is_dead_lettered() -> None:
    m = machine(factory_id="plant-a")
    msgs = [message(telemetry_topic("plant-b", m.id), {"timestamp": TS, "speed": 1})]
    readings, published, dead = resolve(classify(msgs, TEMPLATE, ctx()), {m.id: m})
    assert not readings and not published
    assert [d.reason for d in dead] == [DeadReason.WRONG_FACTORY]
    assert "plant-a" in dead[0].error and "plant-b" in dead[0].error


def test_many_machines_share_a_mixed_envelope() -> None:
    ms = [machine() for _ in range(3)]
    msgs = [message(telemetry_topic("f1", x.id), {"timestamp": TS, "speed": 1}) for x in ms]
    readings, _, _ = resolve(classify(msgs, TEMPLATE, ctx()), {x.id: x for x in ms})
    [env] = envelopes(readings, gateway_id="", request_id="", per_message=1000)
    assert env.routing_key == "reading.f1.mixed"


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_simulated_fault_is_dead_lettered_with_its_reason(kind: str) -> None:
    m = machine()
    rng = random.Random(kind)
    for _ in range(50):
        topic, payload = fault(kind, "f1", m.id, 1765620000_000000, rng)
        triage = classify([message(topic, payload)], TEMPLATE, ctx())
        _, published, unknown = resolve(triage, {m.id: m})
        dead = triage.dead + unknown
        assert not published, (topic, payload)
        assert [d.reason.value for d in dead] == [kind], (topic, payload, dead)


def test_dead_letters_keep_payload_topic_reason_and_error() -> None:
    m = machine()
    bad = b'{"timestamp": "\xff"}'
    unknown_id = str(uuid.uuid4())
    msgs = [
        message(telemetry_topic("f1", m.id), bad),
        message(telemetry_topic("f1", m.id), {"timestamp": "yesterday", "speed": 1}, mid=2),
        message(telemetry_topic("f1", unknown_id), {"timestamp": TS, "speed": 1}, mid=3),
        message(telemetry_topic("f1", "not-a-uuid"), {"timestamp": TS, "speed": 1}, mid=4),
        message(None, b"{}", mid=5),
    ]
    triage = classify(msgs, TEMPLATE, ctx())
    assert triage.machine_ids() == [unknown_id]  # only valid messages, never a malformed id
    _, _, unknown = resolve(triage, {m.id: m, unknown_id: None})
    letters = dead_letters(triage.dead + unknown, gateway_id="b", request_id="r")
    by_reason = {e.dead["reason"]: e.dead for e in letters if e.dead}
    assert set(by_reason) == {"invalid_utf8", "schema", "unknown_machine", "bad_topic"}
    utf8 = by_reason["invalid_utf8"]
    assert utf8["raw"] == bad.decode("utf-8", "backslashreplace")
    assert utf8["topic"] == telemetry_topic("f1", m.id)
    assert utf8["machine_id"] == m.id and utf8["factory_id"] == "f1"
    assert by_reason["schema"]["errors"][0]["field"] == "timestamp"
    assert sum(1 for e in letters if e.dead and e.dead["reason"] == "unknown_machine") == 2
    assert all(e.source == "mqtt" and e.routing_key == "dead" for e in letters)


def test_bridge_status_messages_are_ignored_not_dead_lettered() -> None:
    triage = classify([message("factory/bridge/b1/status", b"online")], TEMPLATE, ctx())
    assert len(triage.ignored) == 1 and not triage.dead and not triage.valid


def test_unexpected_validation_failure_is_a_dead_letter_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import services.mqtt_bridge.triage as triage_module

    def boom(payload: bytes, ctx: ValidationContext) -> None:
        raise RecursionError("deeply nested")

    monkeypatch.setattr(triage_module, "parse_payload", boom)
    triage = classify([message(telemetry_topic("f1", machine().id), b"{}")], TEMPLATE, ctx())
    assert [d.reason for d in triage.dead] == [DeadReason.SCHEMA]
