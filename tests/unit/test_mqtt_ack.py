"""Acknowledgement bookkeeping of the edge link, without a broker.

An edge message is settled only on the AMQP channel it arrived on (a delivery tag means nothing
on any other); one ``basic.ack(multiple)`` up to a group's last tag covers the group; a group
given up on goes back to the queue (``basic.nack(requeue)``); messages of a channel that closed
are counted stale (the broker redelivers them). Every message received frees its slot exactly
once. The real broker's side of these rules is tests/integration/test_mqtt_edge_ack.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiormq
import pytest
from prometheus_client import REGISTRY

from services.mqtt_bridge.link import EdgeLink, Inbound, inbound
from services.mqtt_bridge.settings import Settings

STALE = "millrace_mqtt_stale_messages_total"


@dataclass
class FakeChannel:
    """Records what the link asks of an aiormq channel."""

    is_closed: bool = False
    fail: bool = False
    acks: list[tuple[int, bool]] = field(default_factory=list)
    nacks: list[tuple[int, bool, bool]] = field(default_factory=list)

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        if self.fail:
            raise aiormq.exceptions.ChannelInvalidStateError("closed under us")
        self.acks.append((delivery_tag, multiple))

    async def basic_nack(
        self, delivery_tag: int, multiple: bool = False, requeue: bool = True
    ) -> None:
        if self.fail:
            raise aiormq.exceptions.ChannelInvalidStateError("closed under us")
        self.nacks.append((delivery_tag, multiple, requeue))


@dataclass
class FakeMessage:
    """The parts of an aio-pika incoming message the link reads."""

    delivery_tag: int
    routing_key: str
    channel: FakeChannel
    body: bytes = b"{}"
    headers: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def link() -> tuple[EdgeLink, list[Inbound]]:
    received: list[Inbound] = []
    return EdgeLink(Settings(), None, received.append), received  # type: ignore[arg-type]


async def deliver(lk: EdgeLink, channel: FakeChannel, *tags: int) -> None:
    for tag in tags:
        await lk._on_message(
            FakeMessage(tag, f"factory.f1.machine.m{tag}.telemetry", channel)  # type: ignore[arg-type]
        )


def stale_total() -> float:
    return REGISTRY.get_sample_value(STALE) or 0.0


def test_an_edge_message_keeps_its_topic_tag_channel_and_qos() -> None:
    channel = FakeChannel()
    m = inbound(
        FakeMessage(  # type: ignore[arg-type]
            7, "factory.f1.machine.m1.telemetry", channel, b"x", {"x-mqtt-publish-qos": 0}
        )
    )
    assert (m.tag, m.topic, m.payload, m.channel, m.qos) == (
        7,
        "factory/f1/machine/m1/telemetry",
        b"x",
        channel,
        0,
    )
    assert inbound(FakeMessage(8, "", channel)).topic is None  # type: ignore[arg-type]
    assert inbound(FakeMessage(9, "a.b", channel, headers={})).qos == 1  # type: ignore[arg-type]


async def test_one_multiple_ack_up_to_the_last_tag_covers_a_group(link: Any) -> None:
    lk, received = link
    channel = FakeChannel()
    await deliver(lk, channel, 11, 12, 13)
    assert lk.pending == 3
    # Whatever order the group lists them in, one ack up to its highest tag.
    assert await lk.ack([received[2], received[0], received[1]]) == (3, 0)
    assert channel.acks == [(13, True)]
    assert channel.nacks == []
    assert lk.pending == 0


async def test_groups_are_acked_one_after_another(link: Any) -> None:
    lk, received = link
    channel = FakeChannel()
    await deliver(lk, channel, 1, 2, 3, 4, 5)
    assert await lk.ack(received[:2]) == (2, 0)
    assert lk.pending == 3
    assert await lk.ack(received[2:]) == (3, 0)
    assert channel.acks == [(2, True), (5, True)]


async def test_a_released_group_is_returned_to_the_queue_message_by_message(link: Any) -> None:
    lk, received = link
    channel = FakeChannel()
    await deliver(lk, channel, 4, 5, 6)
    await lk.release(received[:2])
    # Returned one by one, never "multiple": an earlier group still being published must not
    # be returned with it.
    assert channel.nacks == [(4, False, True), (5, False, True)]
    assert channel.acks == []
    assert lk.pending == 1


async def test_messages_of_a_closed_channel_are_stale_and_never_settled(link: Any) -> None:
    lk, received = link
    old = FakeChannel()
    await deliver(lk, old, 1, 2)
    old.is_closed = True  # connection lost: the broker requeued both
    before = stale_total()
    assert await lk.ack(received) == (0, 2)
    assert old.acks == []
    assert stale_total() == before + 2
    assert lk.pending == 0


async def test_a_group_spanning_a_reconnection_is_settled_only_on_its_live_channel(
    link: Any,
) -> None:
    """Tag 1 of the old channel and tag 1 of the new one are different messages: acking the
    old one's tag on the new channel would acknowledge a message nobody processed."""
    lk, received = link
    old, new = FakeChannel(), FakeChannel()
    await deliver(lk, old, 1, 2)
    old.is_closed = True
    await deliver(lk, new, 1)  # the broker's redelivery of an old message, numbered anew
    before = stale_total()
    assert await lk.ack(received) == (1, 2)
    assert (old.acks, new.acks) == ([], [(1, True)])
    assert stale_total() == before + 2


async def test_a_channel_failing_while_settling_leaves_its_messages_to_redelivery(
    link: Any,
) -> None:
    lk, received = link
    failing, fine = FakeChannel(fail=True), FakeChannel()
    await deliver(lk, failing, 3)
    await deliver(lk, fine, 9)
    assert await lk.ack(received) == (1, 1)
    assert fine.acks == [(9, True)]
    await deliver(lk, failing, 4)
    await lk.release(received[2:])  # no exception either way
    assert lk.pending == 0


async def test_every_message_frees_its_slot_once(link: Any) -> None:
    lk, received = link
    channel = FakeChannel()
    await deliver(lk, channel, 1, 2, 3, 4)
    await lk.ack(received[:1])
    await lk.release(received[1:2])
    channel.is_closed = True
    await lk.ack(received[2:])
    assert lk.pending == 0
