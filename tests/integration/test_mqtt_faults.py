"""The MQTT edge and the bridge while the broker goes away (``infra/local/deps.sh stop|start``,
SIGKILL) or fills up.

- RabbitMQ (and with it the edge) stopped while gateways publish: they get no PUBACK meanwhile,
  and every reading that was PUBACKed arrives once it is back.
- RabbitMQ SIGKILLed with a backlog of PUBACKed readings and no bridge running: all of it is
  there after the restart (the PUBACK waited for the quorum queue's fsync).
- The edge queue full: publishes are refused (no PUBACK, the connection is closed), nothing that
  was PUBACKed is lost, and the gateway still holds what was refused.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import cast

import aio_pika
import orjson
import pytest

from services.mqtt_bridge.settings import Settings
from shared import edge
from shared.machines import Machine
from shared.rabbitctl import rabbitmqctl_command
from shared.readings import to_ns
from shared.settings import AmqpSettings
from tests.mqtt_fixtures import FACTORY, BridgeProcess, MqttScope, wait_until
from tests.paths import DEPS
from tools.simulator import Config, MqttPublisher, SimMachine, Simulator
from tools.simulator.measure import AmqpTap
from tools.simulator.payloads import iso

pytestmark = [pytest.mark.integration, pytest.mark.disruptive, pytest.mark.timeout(420)]


def deps(action: str, name: str) -> None:
    result = subprocess.run(
        [DEPS, action, name], capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def sigkill_rabbitmq(amqp: AmqpSettings) -> None:
    """SIGKILL the node's Erlang VM: no shutdown, no flush."""
    out = subprocess.run(
        rabbitmqctl_command(amqp.url.get_secret_value(), "eval", "os:getpid()."),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    pid = int(out.strip().strip('"'))
    subprocess.run(["kill", "-KILL", str(pid)], check=True)


def publisher(scope: MqttScope, **options: object) -> MqttPublisher:
    m = scope.mqtt
    return MqttPublisher(
        m.host,
        m.port,
        client_id=f"{m.username}-{uuid.uuid4().hex[:8]}",
        username=m.username,
        password=m.password.get_secret_value() if m.password else None,
        **options,  # type: ignore[arg-type]
    )


async def declare_edge(settings: Settings) -> None:
    """The test's edge queue, as the bridge would declare it (the bridge is not running)."""
    async with await aio_pika.connect(settings.amqp.url.get_secret_value()) as conn:
        await edge.declare(await conn.channel(), settings.edge, settings.amqp, settings.mqtt.topics)


async def edge_depth(settings: Settings) -> int:
    async with await aio_pika.connect(settings.amqp.url.get_secret_value()) as conn:
        channel = await conn.channel()
        queue = await channel.declare_queue(settings.edge.queue, passive=True)
        return int(queue.declaration_result.message_count or 0)


def payloads(n: int, t0_us: int) -> list[tuple[bytes, int]]:
    return [
        (orjson.dumps({"timestamp": iso(t0_us + i * 1000), "speed": 1000.0 + i}), t0_us + i * 1000)
        for i in range(n)
    ]


@pytest.fixture
def rabbitmq_restored() -> Iterator[None]:
    yield None
    deps("start", "rabbitmq")  # whatever happened in the test


async def test_rabbitmq_down_while_publishing_everything_pubacked_arrives(
    bridge_process: BridgeProcess,
    amqp_cleanup: AmqpSettings,
    machines: list[Machine],
    mqtt_scope: MqttScope,
    rabbitmq_restored: None,  # last: restarted before the other fixtures clean up
) -> None:
    await asyncio.to_thread(bridge_process.start)
    # Durable: the queue and what the bridge publishes into it survive the broker's restart.
    tap = await AmqpTap(
        amqp_cleanup,
        exchange=amqp_cleanup.exchange,
        binding="reading.#",
        durable=True,
        name=f"tap-{uuid.uuid4().hex[:8]}",
    ).start()
    try:
        config = Config(
            [SimMachine(m.id, FACTORY) for m in machines],
            rate=100,  # 200 readings/s in all
            duration_s=600,  # stopped below
            topic_template=mqtt_scope.template,
        )
        gateway = publisher(mqtt_scope).connect()
        stop = threading.Event()
        sim = Simulator(config, mqtt=gateway)
        running = asyncio.create_task(asyncio.to_thread(sim.run, stop))
        try:
            assert await tap.wait_for(lambda a: len(a.readings) >= 200, 30)
            await asyncio.to_thread(deps, "stop", "rabbitmq")
            # The edge is down with the broker: the gateway gets no PUBACK, keeps its readings.
            await asyncio.to_thread(
                wait_until, lambda: gateway.outstanding > 0, 30, "the gateway holds unacknowledged"
            )
            await asyncio.to_thread(deps, "start", "rabbitmq")
            await asyncio.to_thread(wait_until, bridge_process.ready, 120, "bridge ready again")
        finally:
            stop.set()  # a failure above must not leave the simulator running for minutes
        stats = await running
        gateway.close()

        keys = cast(list[tuple[str, str]], gateway.acked_keys)
        pubacked = {(machine_id, to_ns(datetime.fromisoformat(ts))) for machine_id, ts in keys}
        assert len(pubacked) == stats.readings == gateway.acked

        def all_arrived(a: object) -> bool:
            return pubacked <= tap.arrivals.keys

        assert await tap.wait_for(all_arrived, 120), len(tap.arrivals.readings)
    finally:
        await tap.close()
    log = bridge_process.log()
    # The bridge's own reports of the outage are warnings (it survives it), never errors.
    ours = [line for line in log.splitlines() if '"logger": "services.' in line]
    assert any('"level": "WARNING"' in line for line in ours), log
    assert not any('"level": "ERROR"' in line for line in ours), log


async def test_sigkill_with_a_pubacked_backlog_loses_nothing(
    bridge_process: BridgeProcess,
    bridge_settings: Settings,
    amqp_cleanup: AmqpSettings,
    machines: list[Machine],
    mqtt_scope: MqttScope,
    rabbitmq_restored: None,
) -> None:
    await declare_edge(bridge_settings)
    n = 5000
    t0 = (time.time_ns() // 10**9 - 3600) * 10**6
    topic = mqtt_scope.topic(FACTORY, machines[0].id)
    gateway = publisher(mqtt_scope).connect()
    for body, ts in payloads(n, t0):
        gateway.publish(topic, body, key=ts)
    assert gateway.flush(60), gateway.outstanding  # every one PUBACKed by the edge...
    sigkill_rabbitmq(bridge_settings.amqp)  # ...and the broker killed right after the last
    gateway.close(0)
    await asyncio.to_thread(deps, "start", "rabbitmq")
    assert await edge_depth(bridge_settings) == n  # all there after the crash
    data = await AmqpTap(amqp_cleanup, exchange=amqp_cleanup.exchange, binding="reading.#").start()
    try:
        await asyncio.to_thread(bridge_process.start)
        assert await data.wait_for(lambda a: a.distinct() >= n, 90), data.arrivals.distinct()
    finally:
        await data.close()
    machine = machines[0].id
    assert {(machine, ts * 1000) for _, ts in payloads(n, t0)} <= data.arrivals.keys


async def test_a_full_edge_refuses_instead_of_dropping(
    bridge_process: BridgeProcess,
    bridge_settings: Settings,
    taps: tuple[AmqpTap, AmqpTap],
    machines: list[Machine],
    mqtt_scope: MqttScope,
) -> None:
    data, _ = taps
    small = bridge_settings.model_copy(
        update={"edge": bridge_settings.edge.model_copy(update={"max_bytes": 40_000})}
    )
    bridge_process.settings = small
    await declare_edge(small)
    n = 3000  # ~65 bytes each: far more than 40 kB
    t0 = (time.time_ns() // 10**9 - 7200) * 10**6
    topic = mqtt_scope.topic(FACTORY, machines[0].id)
    gateway = publisher(mqtt_scope, max_outstanding=50)
    gateway.connect()

    def send() -> None:
        for body, ts in payloads(n, t0):
            gateway.publish(topic, body, key=ts)

    sending = threading.Thread(target=send, daemon=True)
    sending.start()
    # The queue fills; then no publish is acknowledged any more: the count stops moving while
    # the gateway still holds unacknowledged messages.
    seen: list[tuple[float, int]] = []

    def stalled() -> bool:
        now, acked = time.monotonic(), gateway.acked
        if not seen or seen[-1][1] != acked:
            seen.append((now, acked))
        return gateway.outstanding > 0 and now - seen[-1][0] >= 2.0

    await asyncio.to_thread(wait_until, stalled, 90, "the edge refusing publishes")
    assert 0 < gateway.acked < n
    machine = machines[0].id
    pubacked = {(machine, ts * 1000) for ts in gateway.acked_keys}  # type: ignore[operator]
    await asyncio.to_thread(bridge_process.start)
    assert await data.wait_for(lambda a: a.keys >= pubacked, 60), (
        len(pubacked - data.arrivals.keys),
        bridge_process.log(),
    )
    gateway.close(0)
