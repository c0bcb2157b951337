"""The bridge while its dependencies go away and come back (``infra/local/deps.sh stop|start``).

- RabbitMQ stopped while gateways keep publishing: nothing is acknowledged to Mosquitto
  meanwhile, and every reading Mosquitto acknowledged to a gateway arrives once RabbitMQ is back.
- Mosquitto restarted: the bridge reconnects by itself and readings flow again.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from shared.machines import Machine
from shared.readings import to_ns
from shared.settings import AmqpSettings
from tests.mqtt_fixtures import BridgeProcess, MqttScope, mosquitto_pub, wait_until
from tools.simulator import Config, MqttPublisher, SimMachine, Simulator
from tools.simulator.measure import AmqpTap
from tools.simulator.payloads import iso

pytestmark = [pytest.mark.integration, pytest.mark.disruptive, pytest.mark.timeout(420)]
DEPS = str(Path(__file__).resolve().parents[2] / "infra/local/deps.sh")


def deps(action: str, name: str) -> None:
    result = subprocess.run(
        [DEPS, action, name], capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def rabbitmq_restored() -> Iterator[None]:
    yield None
    deps("start", "rabbitmq")  # whatever happened in the test


@pytest.fixture
def mosquitto_restored() -> Iterator[None]:
    yield None
    deps("start", "mosquitto")


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
            [SimMachine(m.id, "plant-r") for m in machines],
            rate=100,  # 200 readings/s in all
            duration_s=600,  # stopped below
            topic_template=mqtt_scope.template,
        )
        gateway = MqttPublisher(mqtt_scope.mqtt.host, mqtt_scope.mqtt.port).connect()
        stop = threading.Event()
        sim = Simulator(config, mqtt=gateway)
        running = asyncio.create_task(asyncio.to_thread(sim.run, stop))

        assert await tap.wait_for(lambda a: len(a.readings) >= 200, 30)
        await asyncio.to_thread(deps, "stop", "rabbitmq")
        before = gateway.acked
        # Gateways keep publishing, and Mosquitto keeps acknowledging them.
        await asyncio.to_thread(wait_until, lambda: gateway.acked >= before + 1000, 60)
        await asyncio.to_thread(deps, "start", "rabbitmq")
        await asyncio.to_thread(wait_until, bridge_process.ready, 120, "bridge ready again")
        stop.set()
        stats = await running
        gateway.close()

        pubacked = {
            (machine_id, to_ns(datetime.fromisoformat(ts)))
            for machine_id, ts in gateway.acked_keys  # type: ignore[misc]
        }
        assert len(pubacked) == stats.readings == gateway.acked

        def all_arrived(a: object) -> bool:
            return pubacked <= tap.arrivals.keys

        assert await tap.wait_for(all_arrived, 120), len(tap.arrivals.readings)
    finally:
        await tap.close()
    log = bridge_process.log()
    assert "rabbitmq unavailable" in log and '"level": "WARNING"' in log


async def test_mosquitto_restart_the_bridge_reconnects_and_readings_flow_again(
    bridge_process: BridgeProcess,
    taps: tuple[AmqpTap, AmqpTap],
    machines: list[Machine],
    mqtt_scope: MqttScope,
    mosquitto_restored: None,  # last: restarted before the other fixtures clean up
) -> None:
    data, _ = taps
    topic = mqtt_scope.topic("plant-m", machines[0].id)
    t0 = (time.time_ns() // 10**9 - 3600) * 10**6  # an hour ago: inside the retention

    def batch(start: int) -> list[bytes]:
        return [
            orjson.dumps({"timestamp": iso(t0 + (start + i) * 1000), "speed": 1000.0 + i})
            for i in range(200)
        ]

    await asyncio.to_thread(bridge_process.start)
    await asyncio.to_thread(mosquitto_pub, mqtt_scope.mqtt, topic, batch(0))
    assert await data.wait_for(lambda a: a.distinct() >= 200, 30)

    await asyncio.to_thread(deps, "stop", "mosquitto")
    await asyncio.to_thread(
        wait_until, lambda: not bridge_process.ready(), 30, "bridge notices MQTT is gone"
    )
    await asyncio.to_thread(deps, "start", "mosquitto")
    await asyncio.to_thread(wait_until, bridge_process.ready, 90, "bridge reconnected")

    await asyncio.to_thread(mosquitto_pub, mqtt_scope.mqtt, topic, batch(200))
    assert await data.wait_for(lambda a: a.distinct() >= 400, 30), data.arrivals.distinct()
    log = bridge_process.log()
    assert "MQTT connection lost" in log
    assert log.count("connected to MQTT") >= 2
