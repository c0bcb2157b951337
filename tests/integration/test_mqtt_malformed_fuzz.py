"""Malformed MQTT at volume: random bytes, huge payloads, deep nesting, wrong types, empty
payloads. The bridge stays up, every message ends in ``telemetry.dead`` with a reason, and a
good reading sent afterwards still goes through."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from shared.machines import Machine
from tests.mqtt_fixtures import FACTORY, MqttScope, async_wait_until
from tools.simulator.measure import AmqpTap
from tools.simulator.payloads import iso

pytestmark = pytest.mark.integration
REASONS = {"invalid_utf8", "invalid_json", "schema", "unknown_machine", "bad_topic"}


def malformed(rng: random.Random, n: int) -> list[bytes]:
    """``n`` distinct payloads the bridge can never accept."""
    now_us = 1_765_620_000_000_000
    makers: list[Any] = [
        lambda i: rng.randbytes(rng.randrange(1, 300)),  # random bytes
        lambda i: b"\x00" + str(i).encode(),  # NUL first
        lambda i: b"[" * (2000 + i) + b"]" * (2000 + i),  # nesting beyond any parser limit
        lambda i: json.dumps({"i": i, "deep": json.loads("[" * 60 + "]" * 60)}).encode(),
        lambda i: json.dumps({"i": i, "timestamp": "x" * 200_000}).encode(),  # huge
        lambda i: json.dumps([i, "not", "an", "object"]).encode(),  # wrong top-level type
        lambda i: json.dumps({"timestamp": i, "speed": 1.0}).encode(),  # number timestamp
        lambda i: json.dumps({"timestamp": iso(now_us), "speed": [i]}).encode(),  # list value
        lambda i: json.dumps({"readings": {"i": i}}).encode(),  # readings not a list
        lambda i: json.dumps({"readings": [None, i]}).encode(),
        lambda i: json.dumps(
            {
                "timestamp": iso(now_us),
                "speed": 1e308 * 10 if i < 0 else i,
                "sensor_type": {"nested": i},
            }
        ).encode(),
        lambda i: f"\ud800{i}".encode("utf-8", "surrogatepass"),  # lone surrogate
    ]
    out: list[bytes] = []
    seen: set[bytes] = set()
    i = 0
    while len(out) < n:
        payload = makers[i % len(makers)](i)
        i += 1
        if payload not in seen:
            seen.add(payload)
            out.append(payload)
    return out


def edge_client(scope: MqttScope) -> mqtt.Client:
    """A paho client connected to the edge (MQTT 3.1.1) as the service user of the test."""
    settings = scope.mqtt
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"fuzz-{uuid.uuid4().hex}",
        protocol=mqtt.MQTTv311,
    )
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    client.connect(settings.host, settings.port)
    return client


async def test_malformed_payloads_are_all_dead_lettered(
    bridge: dict[str, Any],
    taps: tuple[AmqpTap, AmqpTap],
    machines: list[Machine],
    mqtt_scope: MqttScope,
) -> None:
    data, dead = taps
    payloads = malformed(random.Random(1234), 600)
    topic = mqtt_scope.topic(FACTORY, machines[0].id)
    client = edge_client(mqtt_scope)
    client.loop_start()
    try:
        infos = [client.publish(topic, p, qos=1) for p in payloads]

        def pubacked() -> bool:
            for info in infos:
                info.wait_for_publish(30)
            return all(info.is_published() for info in infos)

        assert await asyncio.to_thread(pubacked)
    finally:
        client.loop_stop()
        client.disconnect()

    expected = {p.decode("utf-8", "backslashreplace") for p in payloads}

    def raws() -> set[str]:
        return {e.dead["raw"] for e in dead.arrivals.envelopes if e.dead}

    await async_wait_until(lambda: raws() >= expected, 60, "every malformed message dead-lettered")
    letters = [e.dead for e in dead.arrivals.envelopes if e.dead]
    assert {d["reason"] for d in letters} <= REASONS
    assert all(d["error"] for d in letters)

    assert bridge["bridge"].edge_ready  # alive, and still doing its job
    client = edge_client(mqtt_scope)
    client.loop_start()
    good = json.dumps({"timestamp": iso(time.time_ns() // 1000), "speed": 1200}).encode()
    client.publish(topic, good, qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    await async_wait_until(lambda: data.arrivals.readings, 15, "good reading through")
    # The good reading went after every malformed one had been handled, on the same path: had
    # one of them slipped through as a reading, it would have arrived first.
    [reading] = data.arrivals.readings
    assert reading["fields"] == {"speed": 1200}
