"""The MQTT bridge against real Mosquitto, RabbitMQ and PostgreSQL.

Messages are published with the real ``mosquitto_pub``; what the bridge publishes is read from
queues bound to the test's private exchanges.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.mqtt_bridge.settings import Settings
from shared.machines import Machine
from tests.mqtt_fixtures import (
    FACTORY,
    BridgeProcess,
    MqttScope,
    async_wait_until,
    mosquitto_pub,
    retained_status,
    wait_until,
    with_inflight,
)
from tests.paths import DEPS
from tools.simulator.measure import AmqpTap, Arrivals
from tools.simulator.payloads import iso

pytestmark = pytest.mark.integration
# An hour ago, whole seconds: inside the retention window whenever the tests run.
T0_US = (time.time_ns() // 10**9 - 3600) * 10**6
Taps = tuple[AmqpTap, AmqpTap]


def readings(n: int, start_us: int = T0_US, **extra: Any) -> list[bytes]:
    return [
        orjson.dumps({"timestamp": iso(start_us + i * 1000), "temperature": 20 + i % 50, **extra})
        for i in range(n)
    ]


async def test_a_reading_is_republished_with_its_machine_routing_key(
    bridge: dict[str, Any], taps: Taps, machines: list[Machine], mqtt_scope: MqttScope
) -> None:
    data, _ = taps
    m = machines[0]
    payload = orjson.dumps(
        {"timestamp": iso(T0_US), "sensor_type": "Temperature", "temperature": 72.5}
    )
    await asyncio.to_thread(
        mosquitto_pub, mqtt_scope.mqtt, mqtt_scope.topic(FACTORY, m.id), [payload]
    )

    assert await data.wait_for(lambda a: len(a.readings) >= 1, 15)
    [envelope] = data.arrivals.envelopes
    assert envelope.routing_key == f"reading.{FACTORY}.{m.id}"
    assert envelope.source == "mqtt"
    assert envelope.gateway_id == mqtt_scope.mqtt.client_id
    assert envelope.readings == [
        {
            "machine_id": m.id,
            "factory_id": FACTORY,
            "sensor_type": "Temperature",
            "location": m.location,  # from the registry
            "ts": T0_US * 1000,
            "fields": {"temperature": 72.5},
        }
    ]


async def test_readings_lists_and_many_messages_are_grouped_not_lost(
    bridge: dict[str, Any], taps: Taps, machines: list[Machine], mqtt_scope: MqttScope
) -> None:
    data, _ = taps
    a, b = machines
    batch = orjson.dumps(
        {
            "location": "Bay 3",
            "readings": [
                {"timestamp": iso(T0_US + i * 1000), "pressure": 100 + i} for i in range(50)
            ],
        }
    )
    await asyncio.gather(
        asyncio.to_thread(
            mosquitto_pub, mqtt_scope.mqtt, mqtt_scope.topic(FACTORY, a.id), readings(500)
        ),
        asyncio.to_thread(mosquitto_pub, mqtt_scope.mqtt, mqtt_scope.topic(FACTORY, b.id), [batch]),
    )
    assert await data.wait_for(lambda arr: arr.distinct() >= 550, 30), data.arrivals.distinct()
    arrivals = data.arrivals
    assert len(arrivals.readings) == 550  # nothing twice
    assert len(arrivals.envelopes) < 550  # grouped: many readings per AMQP message
    from_b = [r for r in arrivals.readings if r["machine_id"] == b.id]
    assert {r["location"] for r in from_b} == {"Bay 3"}
    totals = bridge["bridge"].totals  # counted once the confirms are in, just after arrival
    await async_wait_until(lambda: totals.published == 501, 10, "501 messages published")


def _malformed(
    scope: MqttScope, factory: str, known: str, n: int
) -> dict[str, list[tuple[str, bytes]]]:
    """``n`` messages of each reason, every payload unique so that each can be found again."""
    unknown = [str(uuid.uuid4()) for _ in range(10)]
    topic = scope.topic(factory, known)
    out: dict[str, list[tuple[str, bytes]]] = {
        "invalid_utf8": [(topic, b'{"i": %d, "note": "\xff\xfe\xc3\x28"}' % i) for i in range(n)],
        "invalid_json": [(topic, b'{"i": %d, "timestamp": ' % i) for i in range(n)],
        "schema": [],
        "unknown_machine": [
            (scope.topic(factory, unknown[i % 10]), p) for i, p in enumerate(readings(n))
        ],
        "bad_topic": [],
    }
    schema_kinds = [
        lambda i: {"i": i, "timestamp": iso(T0_US), "temperature": 1.0},  # undeclared field
        lambda i: {"timestamp": f"2025-12-13T10:00:{i % 60:02d}", "speed": float(i)},  # no zone
        lambda i: {"timestamp": iso(T0_US + i), "temperature": 5000.0 + i},  # out of range
        lambda i: {"timestamp": iso(T0_US + i)},  # no value
        lambda i: {"readings": [{"timestamp": iso(T0_US + i), "speed": "fast"}]},
    ]
    out["schema"] = [(topic, orjson.dumps(schema_kinds[i % 5](i))) for i in range(n)]
    # Matches the subscription, but not the template: a factory id that is not one (a "." would
    # make the edge's routing key one word longer: it would match no binding at all)...
    half = n // 2
    bad_factory = scope.topic(f"{factory} bad factory!", known)
    out["bad_topic"] = [(bad_factory, p) for p in readings(half, T0_US + 10**9)]
    # ... and a topic of the other subscription, which has no machine at all.
    other = f"{scope.prefix}/other/{factory}/oops"
    out["bad_topic"] += [(other, p) for p in readings(n - half, T0_US + 2 * 10**9)]
    return out


async def test_a_thousand_malformed_messages_of_every_kind_are_dead_lettered_with_their_reason(
    bridge: dict[str, Any], taps: Taps, machines: list[Machine], mqtt_scope: MqttScope
) -> None:
    data, dead = taps
    n = 1000
    sent = _malformed(mqtt_scope, FACTORY, machines[0].id, n)
    by_topic: dict[str, list[bytes]] = {}
    for messages in sent.values():
        for topic, payload in messages:
            by_topic.setdefault(topic, []).append(payload)
    await asyncio.gather(
        *(
            asyncio.to_thread(mosquitto_pub, mqtt_scope.mqtt, topic, payloads)
            for topic, payloads in by_topic.items()
        )
    )
    expected = {
        (reason, topic, p.decode("utf-8", "backslashreplace"))
        for reason, messages in sent.items()
        for topic, p in messages
    }
    assert len(expected) == n * len(sent)  # every message unique, so each can be found

    def found(a: Arrivals) -> set[tuple[str, str, str]]:
        return {(e.dead["reason"], e.dead["topic"], e.dead["raw"]) for e in a.envelopes if e.dead}

    # At least once: a RabbitMQ hiccup may repeat a dead letter, never lose one.
    assert await dead.wait_for(lambda a: found(a) >= expected, 60), len(
        expected - found(dead.arrivals)
    )
    assert found(dead.arrivals) == expected
    letters = [e.dead for e in dead.arrivals.envelopes if e.dead]
    assert all(d["error"] for d in letters)
    assert all(e.source == "mqtt" for e in dead.arrivals.envelopes)

    # Alive and still doing its job.
    assert bridge["bridge"].edge_ready
    good = orjson.dumps({"timestamp": iso(T0_US), "speed": 1200})
    await asyncio.to_thread(
        mosquitto_pub, mqtt_scope.mqtt, mqtt_scope.topic(FACTORY, machines[0].id), [good]
    )
    assert await data.wait_for(lambda a: len(a.readings) == 1, 15)
    totals = bridge["bridge"].totals
    await async_wait_until(lambda: totals.dead_lettered == len(expected), 10, "all dead-lettered")


async def test_status_is_online_while_running_and_offline_after_shutdown(
    bridge_process: BridgeProcess, mqtt_scope: MqttScope
) -> None:
    await asyncio.to_thread(bridge_process.start)
    assert await asyncio.to_thread(retained_status, mqtt_scope.mqtt) == b"online"
    # uvicorn re-raises SIGTERM once its graceful shutdown is over: -15 is a clean exit here.
    assert await asyncio.to_thread(bridge_process.terminate) in (0, -15)
    log = bridge_process.log()
    assert '"bridge stopped' in log and "Application shutdown complete" in log
    assert await asyncio.to_thread(retained_status, mqtt_scope.mqtt) == b"offline"


async def test_sigkill_with_messages_in_flight_loses_nothing_and_repeats_only_the_unacknowledged(
    bridge_settings: Settings,
    taps: Taps,
    machines: list[Machine],
    mqtt_scope: MqttScope,
    tmp_path: Path,
) -> None:
    """Killed while it holds edge messages it has not acknowledged yet: those come
    again after the restart (at least once), nothing else does, and nothing is lost. The
    re-deliveries are counted where they happen, on the bridge's output, not in InfluxDB
    (which would overwrite a repeated point with itself and hide it)."""
    data, _ = taps
    inflight = 50  # what the edge may have sent the bridge unacknowledged at any moment
    proc = BridgeProcess(with_inflight(bridge_settings, inflight), tmp_path / "b.log")
    n = 10_000
    try:
        await asyncio.to_thread(proc.start)
        topic = mqtt_scope.topic(FACTORY, machines[0].id)
        publishing = asyncio.create_task(
            asyncio.to_thread(mosquitto_pub, mqtt_scope.mqtt, topic, readings(n))
        )
        assert await data.wait_for(lambda a: a.distinct() >= 1, 30)
        await asyncio.to_thread(proc.kill)  # mid-stream: messages taken, not yet acknowledged
        at_kill = data.arrivals.distinct()
        await publishing  # every message PUBACKed by the edge, which keeps them in its queue
        assert 0 < at_kill < n, at_kill

        await asyncio.to_thread(proc.start)
        assert await data.wait_for(lambda a: a.distinct() >= n, 60), data.arrivals.distinct()
        await asyncio.to_thread(
            wait_until,
            lambda: proc.metric("millrace_mqtt_unacked_messages") == 0,
            15,
            "every message acknowledged",
        )
    finally:
        proc.close()
    sent = {(machines[0].id, (T0_US + i * 1000) * 1000) for i in range(n)}
    assert data.arrivals.keys == sent  # nothing lost, nothing foreign
    # Re-delivered: at most what was in flight when the bridge died, each copy identical.
    repeated = data.arrivals.duplicates()
    assert repeated <= inflight, repeated
    copies: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in data.arrivals.readings:
        copies.setdefault((r["machine_id"], r["ts"]), []).append(r)
    assert all(all(c == group[0] for c in group) for group in copies.values())


async def test_readings_published_while_the_bridge_is_down_are_delivered_once_it_returns(
    bridge_process: BridgeProcess, taps: Taps, machines: list[Machine], mqtt_scope: MqttScope
) -> None:
    """Persistent session: killed with nothing in flight, the bridge gets what was published
    meanwhile when it returns, each message once (nothing was unacknowledged)."""
    data, _ = taps
    await asyncio.to_thread(bridge_process.start)
    await asyncio.to_thread(bridge_process.kill)
    assert bridge_process.proc is not None and bridge_process.proc.returncode == -9
    # The broker noticed the dead connection and published the last will.
    await asyncio.to_thread(wait_until, lambda: retained_status(mqtt_scope.mqtt) == b"offline", 15)

    topic = mqtt_scope.topic(FACTORY, machines[0].id)
    await asyncio.to_thread(mosquitto_pub, mqtt_scope.mqtt, topic, readings(1000))  # all PUBACKed

    await asyncio.to_thread(bridge_process.start)
    assert await data.wait_for(lambda a: a.distinct() >= 1000, 60), data.arrivals.distinct()
    # Every message acknowledged to Mosquitto: nothing is left that could come a second time.
    await asyncio.to_thread(
        wait_until,
        lambda: bridge_process.metric("millrace_mqtt_unacked_messages") == 0,
        15,
        "every message acknowledged",
    )
    assert bridge_process.metric('millrace_mqtt_messages_total{outcome="published"}') == 1000
    assert len(data.arrivals.readings) == 1000  # none twice
    assert {r["ts"] for r in data.arrivals.readings} == {
        (T0_US + i * 1000) * 1000 for i in range(1000)
    }
    assert await asyncio.to_thread(retained_status, mqtt_scope.mqtt) == b"online"


async def test_health_ready_and_metrics(bridge_process: BridgeProcess) -> None:
    await asyncio.to_thread(bridge_process.start)
    async with httpx.AsyncClient(base_url=bridge_process.url) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        ready = (await client.get("/ready")).json()
        assert ready == {"status": "ready", "checks": {"edge": True, "rabbitmq": True}}
        metrics = (await client.get("/metrics")).text
    for reason in ("invalid_utf8", "invalid_json", "schema", "unknown_machine", "bad_topic"):
        assert f'millrace_mqtt_dead_letters_total{{reason="{reason}"}} 0.0' in metrics
    assert "millrace_mqtt_connected 1.0" in metrics


@pytest.mark.disruptive
async def test_postgres_lost_while_bridging_holds_the_messages_and_delivers_them_after(
    bridge: dict[str, Any],
    taps: Taps,
    machines: list[Machine],
    mqtt_scope: MqttScope,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The machine registry (PostgreSQL) down while messages arrive: they are neither dead-
    lettered as unknown machines nor acknowledged; they are published once it is back."""
    data, dead = taps
    n = 20
    # A machine the bridge has not looked up yet: only PostgreSQL can say it exists.
    topic = mqtt_scope.topic(FACTORY, machines[1].id)
    await asyncio.to_thread(subprocess.run, [DEPS, "stop", "postgres"], check=True, timeout=90)
    try:
        with caplog.at_level(logging.WARNING):
            await asyncio.to_thread(mosquitto_pub, mqtt_scope.mqtt, topic, readings(n))
            await async_wait_until(
                lambda: any(
                    "machine registry unavailable" in r.getMessage() for r in caplog.records
                ),
                30,
                "a WARNING that the registry is retried",
            )
        assert data.arrivals.readings == [] and dead.arrivals.envelopes == []
    finally:
        await asyncio.to_thread(subprocess.run, [DEPS, "start", "postgres"], check=True, timeout=90)
    assert await data.wait_for(lambda a: a.distinct() >= n, 60), data.arrivals.distinct()
    assert {r["ts"] for r in data.arrivals.readings} == {
        (T0_US + i * 1000) * 1000 for i in range(n)
    }
    assert dead.arrivals.envelopes == []  # none was taken for an unknown machine
