"""Back-pressure at the HTTP door: a full writer queue and a broker resource alarm make ingest
answer 503 + Retry-After (before reading the body), nothing accepted is dropped, and the door
reopens by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from services.ingest_gateway.app import create_app
from services.ingest_gateway.settings import Settings
from shared.settings import AmqpSettings, PostgresSettings
from tests.dependencies import DependencyControl
from tests.integration.test_ingest_gateway import URL, _create_machines, batch
from tests.polling import wait_for
from tests.queues import delete_topology, purge_queue, queue_depth
from tests.tokens import bearer, trust_test_key

pytestmark = pytest.mark.integration


@pytest.fixture
def small_queue(amqp_settings: AmqpSettings) -> AmqpSettings:
    return amqp_settings.model_copy(update={"queue_max_length": 3, "confirm_timeout_s": 2.0})


@pytest.fixture
def client(small_queue: AmqpSettings, postgres_settings: PostgresSettings) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(amqp=small_queue, postgres=postgres_settings))) as c:
        trust_test_key(c.app_state)
        yield c
    asyncio.run(delete_topology(small_queue))


def test_full_queue_refuses_then_reopens(
    client: TestClient, small_queue: AmqpSettings, postgres_settings: PostgresSettings
) -> None:
    [machine] = asyncio.run(_create_machines(postgres_settings, 1))
    auth = bearer()
    statuses = [client.post(URL, json=batch(machine), headers=auth).status_code for _ in range(6)]
    accepted = statuses.count(202)
    # Quorum queues apply the bound as of their last state, so one more may slip in.
    assert 3 <= accepted <= 4 and statuses[:3] == [202] * 3
    assert statuses[accepted:] == [503] * (6 - accepted)
    assert queue_depth(small_queue) == accepted  # what was accepted is still there; nothing dropped
    resp = client.post(URL, json=batch(machine), headers=auth)
    assert resp.status_code == 503 and resp.headers["retry-after"]
    purge_queue(small_queue)  # the writers catch up
    wait_for(lambda: client.post(URL, json=batch(machine), headers=auth).status_code == 202)


def memory_watermark(control: DependencyControl) -> list[str]:
    """The broker's memory high watermark as ``set_vm_memory_high_watermark`` arguments (a
    fraction of RAM, or ``absolute`` bytes), to put back exactly what was set before."""
    value = control.rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
    if value.startswith("{absolute,"):
        return ["absolute", value.removeprefix("{absolute,").rstrip("}").strip()]
    float(value)  # a fraction; anything else is a format this test does not know
    return [value]


def refused_up_front() -> float:
    return REGISTRY.get_sample_value("millrace_ingest_backpressure_total") or 0.0


@pytest.mark.disruptive
def test_resource_alarm_blocks_then_reopens(
    client: TestClient, postgres_settings: PostgresSettings, dependency_control: DependencyControl
) -> None:
    [machine] = asyncio.run(_create_machines(postgres_settings, 1))
    auth = bearer()
    assert client.post(URL, json=batch(machine), headers=auth).status_code == 202
    publisher = client.app_state["publisher"]
    previous = memory_watermark(dependency_control)
    dependency_control.rabbitmqctl("set_vm_memory_high_watermark", "0.0000001")
    try:
        # RabbitMQ blocks a connection when it next publishes: that first request waits for
        # its confirm (bounded by AMQP_CONFIRM_TIMEOUT_S) and gets 503; nothing is accepted.
        resp = client.post(URL, json=batch(machine), headers=auth)
        assert resp.status_code == 503
        wait_for(lambda: publisher.pressure() is not None)
        before = refused_up_front()
        resp = client.post(URL, json=batch(machine), headers=auth)
        assert resp.status_code == 503 and resp.headers["retry-after"]
        assert "alarm" in resp.json()["message"]
        # Refused up front (no publish, no confirm awaited): counted as such.
        assert refused_up_front() == before + 1
    finally:
        dependency_control.rabbitmqctl("set_vm_memory_high_watermark", *previous)
    wait_for(lambda: publisher.pressure() is None)
    assert client.post(URL, json=batch(machine), headers=auth).status_code == 202
