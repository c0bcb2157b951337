"""The bridge's pipeline with a fake edge link, RabbitMQ and registry: when edge messages are
acknowledged.

The rule under test: an edge message is acknowledged only after everything its group produced
(readings and dead letters) was confirmed; never while publishing fails; in arrival order; a
group given up on goes back to the queue before any later group is acknowledged.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
import pytest

from services.mqtt_bridge.bridge import Bridge
from services.mqtt_bridge.link import Inbound
from services.mqtt_bridge.settings import BridgeOptions, Settings
from shared.envelope import Envelope
from shared.errors import BrokerUnavailable
from shared.machines import Machine

MACHINE = Machine(str(uuid.uuid4()), "CNC-1", "Hall 1", "Temperature", "active", "", "", "f1")
TS = "2025-12-13T10:00:00Z"


CHANGED: asyncio.Event  # set by the fakes on every call, so tests wait without polling


class FakeLink:
    """Stands in for EdgeLink: records the tags acked and released, in order."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.released: list[int] = []
        self.events: list[tuple[str, list[int]]] = []
        self.ready = True
        self.consuming = True
        self.closed = False

    async def ack(self, messages: Iterable[Inbound]) -> tuple[int, int]:
        tags = [m.tag for m in messages]
        self.acked.extend(tags)
        self.events.append(("ack", tags))
        CHANGED.set()
        return len(tags), 0

    async def release(self, messages: Iterable[Inbound]) -> None:
        tags = [m.tag for m in messages]
        self.released.extend(tags)
        self.events.append(("release", tags))
        CHANGED.set()

    async def stop_consuming(self) -> None:
        self.consuming = False

    async def close(self) -> None:
        self.closed = True


class FakePublisher:
    """Fails ``failures`` times, then confirms once ``gate`` is open."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.gate = asyncio.Event()
        self.gate.set()
        self.published: list[Envelope] = []
        self.dead: list[Envelope] = []
        self.attempts = 0

    async def _confirm(self) -> None:
        self.attempts += 1
        CHANGED.set()
        if self.failures:
            self.failures -= 1
            raise BrokerUnavailable("connection refused")
        await self.gate.wait()

    async def publish(self, envelopes: list[Envelope]) -> None:
        await self._confirm()
        self.published.extend(envelopes)
        CHANGED.set()

    async def dead_letter(self, envelopes: list[Envelope]) -> None:
        await self._confirm()
        self.dead.extend(envelopes)


class FakeMachines:
    async def get_many(self, ids: list[str]) -> dict[str, Machine | None]:
        return {i: MACHINE if i == MACHINE.id else None for i in ids}


def reading(tag: int, machine_id: str = MACHINE.id, payload: Any = None) -> Inbound:
    body = payload if payload is not None else {"timestamp": TS, "speed": float(tag)}
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Inbound(tag, f"factory/f1/machine/{machine_id}/telemetry", raw)


@pytest.fixture
async def pipeline(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Bridge, Any, Any]]:
    global CHANGED
    CHANGED = asyncio.Event()
    options = getattr(request, "param", {})
    settings = Settings(
        bridge=BridgeOptions(
            group_max_messages=options.get("group", 1000),
            group_wait_ms=1,
            groups_in_flight=options.get("in_flight", 4),
            retry_max_s=0.01,
        )
    )
    publisher = FakePublisher(options.get("failures", 0))
    link = FakeLink()
    bridge = Bridge(settings, publisher, FakeMachines())  # type: ignore[arg-type]
    bridge.run_pipeline(link)  # type: ignore[arg-type]
    yield bridge, link, publisher
    await bridge.stop(options.get("stop_timeout", 5))


def feed(bridge: Bridge, messages: list[Inbound]) -> None:
    for m in messages:
        bridge._inbox.put_nowait(m)


async def until(predicate: Any, timeout_s: float = 5) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            CHANGED.clear()
            if predicate():
                return
            await CHANGED.wait()


async def test_acknowledged_only_after_the_confirm(pipeline: Any) -> None:
    bridge, link, publisher = pipeline
    publisher.gate.clear()  # RabbitMQ has not confirmed yet
    feed(bridge, [reading(1), reading(2)])
    await until(lambda: publisher.attempts >= 1)
    assert link.acked == []
    publisher.gate.set()
    await until(lambda: len(link.acked) == 2)
    assert link.acked == [1, 2]
    assert sum(len(e.readings) for e in publisher.published) == 2


@pytest.mark.parametrize("pipeline", [{"failures": 5}], indirect=True)
async def test_publish_failures_are_retried_and_nothing_is_acked_meanwhile(pipeline: Any) -> None:
    bridge, link, publisher = pipeline
    feed(bridge, [reading(1)])
    await until(lambda: link.acked == [1])
    assert publisher.attempts == 6
    assert len(publisher.published) == 1  # once confirmed, never published again


async def test_dead_letters_are_confirmed_before_their_ack_too(pipeline: Any) -> None:
    bridge, link, publisher = pipeline
    publisher.gate.clear()
    feed(bridge, [reading(1), reading(2, payload=b"{oops"), reading(3, str(uuid.uuid4()))])
    await until(lambda: publisher.attempts >= 2)
    assert link.acked == []
    publisher.gate.set()
    await until(lambda: len(link.acked) == 3)
    assert sorted(e.dead["reason"] for e in publisher.dead if e.dead) == [
        "invalid_json",
        "unknown_machine",
    ]
    assert bridge.totals.published == 1 and bridge.totals.dead_lettered == 2


@pytest.mark.parametrize("pipeline", [{"group": 1, "in_flight": 4}], indirect=True)
async def test_acks_keep_arrival_order_when_later_groups_finish_first(pipeline: Any) -> None:
    bridge, link, publisher = pipeline
    slow_first = asyncio.Event()
    original = publisher.publish

    async def publish(envelopes: list[Envelope]) -> None:
        if envelopes[0].readings[0]["fields"]["speed"] == 1.0:
            await slow_first.wait()
        await original(envelopes)

    publisher.publish = publish
    feed(bridge, [reading(1), reading(2), reading(3)])
    await until(lambda: len(publisher.published) == 2)  # groups 2 and 3 confirmed first
    assert link.acked == []
    slow_first.set()
    await until(lambda: len(link.acked) == 3)
    assert link.acked == [1, 2, 3]


@pytest.mark.parametrize("pipeline", [{"failures": 10**6, "stop_timeout": 1.5}], indirect=True)
async def test_shutdown_with_rabbitmq_down_leaves_messages_for_redelivery(pipeline: Any) -> None:
    bridge, link, publisher = pipeline
    feed(bridge, [reading(1), reading(2)])
    await until(lambda: publisher.attempts >= 3)
    await bridge.stop(1.5)
    assert link.acked == []
    assert link.released == [1, 2]  # back to the edge queue, for this or another bridge
    assert bridge.totals.abandoned == 2
    assert not link.consuming and link.closed


@pytest.mark.parametrize("pipeline", [{"group": 1, "in_flight": 4}], indirect=True)
async def test_a_group_that_fails_unexpectedly_is_returned_before_later_groups_are_acked(
    pipeline: Any,
) -> None:
    """One ack up to a group's last tag covers every earlier tag of the channel: the failed
    group must be back in the queue before a later group's ack could cover it."""
    bridge, link, publisher = pipeline
    original = publisher.publish

    async def publish(envelopes: list[Envelope]) -> None:
        if envelopes[0].readings[0]["fields"]["speed"] == 2.0:
            raise RuntimeError("a bug in publishing")
        await original(envelopes)

    publisher.publish = publish
    feed(bridge, [reading(1), reading(2), reading(3)])
    await until(lambda: len(link.acked) == 2)
    assert link.events == [("ack", [1]), ("release", [2]), ("ack", [3])]
    assert bridge.totals.abandoned == 1
