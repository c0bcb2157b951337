"""Acknowledgement bookkeeping of the MQTT link, without a broker.

A message is PUBACKed only on the connection it came on; everything received frees its slot
exactly once, whether acknowledged or left for redelivery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from services.mqtt_bridge.link import Inbound, MqttLink
from services.mqtt_bridge.settings import Settings
from shared.settings import MqttSettings


class FakeClient:
    def __init__(self) -> None:
        self.acks: list[tuple[int, int]] = []
        self.published: list[tuple[str, bytes, bool]] = []
        self.subscribed: list[Any] = []

    def ack(self, mid: int, qos: int) -> int:
        self.acks.append((mid, qos))
        return 0

    def subscribe(self, topics: Any) -> tuple[int, int]:
        self.subscribed.append(topics)
        return 0, 99

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.published.append((topic, payload, retain))


class InlineLoop:
    """Stands in for the asyncio loop: runs handed-over callbacks at once."""

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        fn(*args)


@pytest.fixture
def link() -> tuple[MqttLink, FakeClient, list[Inbound]]:
    settings = Settings(mqtt=MqttSettings(client_id="unit-bridge"), max_inflight=4)
    received: list[Inbound] = []
    lk = MqttLink(settings, InlineLoop(), received.append)  # type: ignore[arg-type]
    fake = FakeClient()
    lk._client = fake  # type: ignore[assignment]
    return lk, fake, received


def connect(lk: MqttLink, session_present: bool = True) -> None:
    lk._on_connect(
        lk._client,
        None,
        mqtt.ConnectFlags(session_present=session_present),
        ReasonCode(PacketTypes.CONNACK, "Success"),
        None,
    )


def disconnect(lk: MqttLink) -> None:
    lk._on_disconnect(
        lk._client,
        None,
        mqtt.DisconnectFlags(is_disconnect_packet_from_server=False),
        ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"),
        None,
    )


def deliver(lk: MqttLink, mid: int, topic: bytes = b"t/a", qos: int = 1) -> None:
    msg = mqtt.MQTTMessage(mid=mid, topic=topic)
    msg.qos = qos
    msg.payload = b"{}"
    lk._on_message(lk._client, None, msg)


def test_connect_subscribes_and_announces_online(link: Any) -> None:
    lk, fake, _ = link
    connect(lk)
    assert fake.subscribed and fake.published == [
        ("factory/bridge/unit-bridge/status", b"online", True)
    ]
    assert lk.connected and not lk.ready  # ready once the SUBACK is in
    lk._on_subscribe(fake, None, 99, [ReasonCode(PacketTypes.SUBACK, "Granted QoS 1")], None)
    assert lk.ready


def test_acks_in_order_on_the_same_connection(link: Any) -> None:
    lk, fake, received = link
    connect(lk)
    for mid in (11, 12, 13):
        deliver(lk, mid)
    assert lk.pending == 3
    assert lk.ack(received) == (3, 0)
    assert fake.acks == [(11, 1), (12, 1), (13, 1)]
    assert lk.pending == 0


def test_messages_of_a_lost_connection_are_never_acked(link: Any) -> None:
    lk, fake, received = link
    connect(lk)
    deliver(lk, 5)
    disconnect(lk)
    assert lk.ack(received[:1]) == (0, 1)  # while disconnected
    deliver_after = len(received)
    connect(lk)
    deliver(lk, 5)  # the broker redelivers the same id on the new connection
    deliver(lk, 6)
    assert fake.acks == []
    assert lk.ack(received[deliver_after:]) == (2, 0)
    assert fake.acks == [(5, 1), (6, 1)]


def test_an_old_copy_finishing_late_does_not_ack_the_reused_id(link: Any) -> None:
    lk, fake, received = link
    connect(lk)
    deliver(lk, 7)
    connect(lk)  # reconnected (paho calls on_connect again) before the group was confirmed
    deliver(lk, 7)
    old, new = received
    assert lk.ack([old]) == (0, 1)
    assert fake.acks == []
    assert lk.ack([new]) == (1, 0)
    assert fake.acks == [(7, 1)]


def test_qos0_messages_need_no_puback(link: Any) -> None:
    lk, fake, received = link
    connect(lk)
    deliver(lk, 0, qos=0)
    assert lk.ack(received) == (1, 0)
    assert fake.acks == []


def test_slots_bound_what_is_in_flight(link: Any) -> None:
    lk, _, received = link
    connect(lk)
    for mid in range(1, 5):
        deliver(lk, mid)
    assert not lk._slots.acquire(blocking=False)  # all four slots taken
    lk.ack(received[:2])
    assert lk.pending == 2
    assert lk._slots.acquire(blocking=False)
    lk._slots.release()


def test_topic_that_is_not_utf8_is_passed_on_as_none(link: Any) -> None:
    lk, _, received = link
    connect(lk)
    deliver(lk, 3, topic=b"factory/\xff/x")
    assert received[0].topic is None


def test_disconnect_makes_the_link_not_ready(link: Any) -> None:
    lk, fake, _ = link
    connect(lk)
    lk._on_subscribe(fake, None, 99, [ReasonCode(PacketTypes.SUBACK, "Granted QoS 1")], None)
    disconnect(lk)
    assert not lk.ready and not lk.connected
