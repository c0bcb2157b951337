"""The edge side of the bridge: an AMQP consumer of the edge queue ``mqtt.telemetry``.

Gateways publish over MQTT to RabbitMQ's MQTT plugin, which routes each message into the quorum
queue and PUBACKs once it is stored. Every bridge consumes that queue (competing consumers, so
bridges scale by running more), with a prefetch window of ``MQTT_BRIDGE_MAX_INFLIGHT`` messages.

Acknowledgements follow two rules:

- A message is acknowledged only on the channel it arrived on. After a reconnection the broker
  redelivers everything unacknowledged of the old channel; those copies are acknowledged, the old
  ones are not (their delivery tags mean nothing on the new channel).
- Groups finish in arrival order, so one ``basic.ack(multiple)`` up to a group's last tag covers
  it; a group given up on is returned (``basic.nack(requeue)``) before any later group is acked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection

from services.mqtt_bridge import metrics
from services.mqtt_bridge.settings import Settings
from shared import broker, edge
from shared.mqtt_topics import topic_of

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Inbound:
    """One MQTT message as the bridge sees it: its topic, its payload, where to ack it."""

    tag: int
    topic: str | None  # None when the routing key is not a topic the edge could have made
    payload: bytes
    channel: Any = None  # the AMQP channel it arrived on (tests pass None)
    qos: int = 1  # as the gateway published it


def _qos(headers: Any) -> int:
    value = headers.get("x-mqtt-publish-qos", 1) if headers else 1
    return value if isinstance(value, int) else 1


def inbound(message: AbstractIncomingMessage) -> Inbound:
    key = message.routing_key
    return Inbound(
        message.delivery_tag or 0,
        topic_of(key) if key else None,
        message.body,
        message.channel,
        _qos(message.headers),
    )


class EdgeLink:
    def __init__(
        self,
        settings: Settings,
        connection: AbstractRobustConnection,
        deliver: Callable[[Inbound], None],
    ) -> None:
        self.settings = settings
        self._connection = connection
        self._deliver = deliver
        self._channel: AbstractRobustChannel | None = None
        self._consumer_tag: str | None = None
        self._pending = 0

    async def start(self) -> None:
        s = self.settings
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=s.bridge.max_inflight)
        queue = await edge.declare(channel, s.edge, s.amqp, s.mqtt.topics)
        self._consumer_tag = await queue.consume(self._on_message)
        self._queue = queue
        self._channel = channel
        log.info(
            "consuming the MQTT edge queue %s (topics %s), prefetch %d",
            s.edge.queue,
            s.edge.topic_template,
            s.bridge.max_inflight,
        )

    async def stop_consuming(self) -> None:
        """No new deliveries; what was prefetched and not taken returns to the queue on close."""
        if self._consumer_tag is not None:
            await broker.cancel_consumer(self._queue, self._consumer_tag)
            self._consumer_tag = None

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    @property
    def ready(self) -> bool:
        return broker.consuming(self._channel, self._consumer_tag)

    @property
    def pending(self) -> int:
        return self._pending

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._pending += 1
        metrics.UNACKED.set(self._pending)
        self._deliver(inbound(message))

    # ------------------------------------------------------------------ acknowledgement
    async def ack(self, messages: Iterable[Inbound]) -> tuple[int, int]:
        """Acknowledge a finished group; returns (acknowledged, stale)."""
        return await self._settle(list(messages), requeue=None)

    async def release(self, messages: Iterable[Inbound]) -> None:
        """Return a group given up on to the queue (redelivered to some bridge)."""
        await self._settle(list(messages), requeue=True)

    async def _settle(self, messages: list[Inbound], requeue: bool | None) -> tuple[int, int]:
        last: dict[int, tuple[Any, int]] = {}
        for m in messages:
            if m.channel is None:
                continue
            held = last.get(id(m.channel))
            if held is None or m.tag > held[1]:
                last[id(m.channel)] = (m.channel, m.tag)
        done = stale = 0
        for channel, _ in last.values():
            mine = [m for m in messages if m.channel is channel]
            if channel.is_closed:
                stale += len(mine)
                continue
            try:
                if requeue is None:
                    await channel.basic_ack(max(m.tag for m in mine), multiple=True)
                else:
                    for m in mine:
                        await channel.basic_nack(m.tag, multiple=False, requeue=True)
                done += len(mine)
            except (
                aiormq.exceptions.AMQPError,
                aiormq.exceptions.ChannelInvalidStateError,
                ConnectionError,
                RuntimeError,
            ) as e:
                log.warning("could not settle %d edge messages (%s); redelivered", len(mine), e)
                stale += len(mine)
        self._pending = max(0, self._pending - len(messages))
        metrics.UNACKED.set(self._pending)
        if stale:
            metrics.STALE.inc(stale)
        return done, stale
