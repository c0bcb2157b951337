"""RabbitMQ topology and the confirmed publisher every ingest door uses.

Topology (docs/architecture.md "Message format"), declared idempotently by whichever
service starts first:

- topic exchange ``telemetry``; routing key ``reading.<factory_id>.<machine_id>``;
- quorum queue ``telemetry.writer`` bound to ``reading.#``, bounded, overflow ``reject-publish``
  (the broker nacks new data instead of dropping accepted data), poison messages dead-lettered
  after ``delivery_limit`` attempts;
- fanout exchange and quorum queue ``telemetry.dead`` for dead letters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)

from shared.envelope import Envelope
from shared.errors import BrokerUnavailable
from shared.settings import AmqpSettings

log = logging.getLogger(__name__)

# What a publish can fail with when the broker is gone, refuses, or does not confirm in time.
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    asyncio.TimeoutError,
    RuntimeError,  # aio-pika raises it for a closed channel/connection
)
DEAD_LETTER_ROUTING_KEY = "dead"


def routing_key(factory_id: str, machine_id: str) -> str:
    # '.' and wildcard characters would change the routing: keep keys to three words.
    safe_factory = factory_id.replace(".", "_").replace("*", "_").replace("#", "_")
    return f"reading.{safe_factory}.{machine_id}"


def writer_queue_arguments(settings: AmqpSettings) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": settings.dead_letter,
        "x-dead-letter-routing-key": DEAD_LETTER_ROUTING_KEY,
        "x-max-length": settings.queue_max_length,
        "x-overflow": "reject-publish",
        "x-delivery-limit": settings.delivery_limit,
    }


async def declare_topology(
    channel: AbstractChannel, settings: AmqpSettings
) -> tuple[AbstractExchange, AbstractQueue, AbstractExchange]:
    """Declare exchanges and queues; safe to run from every service, every start."""
    exchange = await channel.declare_exchange(
        settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    dead_exchange = await channel.declare_exchange(
        settings.dead_letter, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead_queue = await channel.declare_queue(
        settings.dead_letter, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead_queue.bind(dead_exchange, routing_key="#")
    queue = await channel.declare_queue(
        settings.queue, durable=True, arguments=writer_queue_arguments(settings)
    )
    await queue.bind(exchange, routing_key="reading.#")
    return exchange, queue, dead_exchange


def consuming(channel: AbstractChannel | None, consumer_tag: str | None) -> bool:
    """A consumer is registered (``consumer_tag``) on a channel that is still open."""
    return consumer_tag is not None and channel is not None and not channel.is_closed


async def cancel_consumer(queue: AbstractQueue | None, consumer_tag: str | None) -> None:
    """No new deliveries to this consumer; what it holds stays unacked until it acks or its
    channel closes. A broker already gone only gets a warning."""
    if queue is None or consumer_tag is None:
        return
    try:
        await queue.cancel(consumer_tag)
    except PUBLISH_ERRORS as e:
        log.warning("could not cancel the consumer of %s: %s", queue.name, e)


async def connect(settings: AmqpSettings, name: str) -> AbstractRobustConnection:
    """A robust connection: aio-pika reconnects and restores channels by itself."""
    return await aio_pika.connect_robust(
        settings.url.get_secret_value(),
        client_properties={"connection_name": name},
        heartbeat=settings.heartbeat_s,
        timeout=10,
    )


def to_message(envelope: Envelope) -> aio_pika.Message:
    return aio_pika.Message(
        body=envelope.encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=envelope.message_id,
        correlation_id=envelope.request_id,
        headers=envelope.headers(),
    )


@dataclass(slots=True)
class _Waiting:
    """One caller's envelopes, waiting for the flush that publishes them."""

    envelopes: list[Envelope]
    merge_up_to: int
    done: asyncio.Future[None]
    failed: BaseException | None = None  # the first failure among the messages carrying them


@dataclass(slots=True)
class _Outgoing:
    envelopes: list[Envelope] = field(default_factory=list)
    callers: list[_Waiting] = field(default_factory=list)
    readings: int = 0


def factory_of(key: str) -> str:
    """The factory word of a ``reading.<factory>.<machine>`` routing key."""
    parts = key.split(".")
    return parts[1] if len(parts) == 3 else key


def group(waiting: list[_Waiting]) -> list[_Outgoing]:
    """The flush's messages: callers that allow it (one envelope, ``merge_up_to`` > 0) share a
    message with others of the same source and factory up to ``merge_up_to`` readings; every
    other envelope travels as it is."""
    out: list[_Outgoing] = []
    open_: dict[tuple[str, str], _Outgoing] = {}
    for w in waiting:
        if w.merge_up_to <= 0 or len(w.envelopes) != 1:
            for env in w.envelopes:
                out.append(_Outgoing([env], [w], len(env.readings)))
            continue
        env = w.envelopes[0]
        key = (env.source, factory_of(env.routing_key))
        current = open_.get(key)
        if current is None or current.readings + len(env.readings) > w.merge_up_to:
            current = open_[key] = _Outgoing()
            out.append(current)
        current.envelopes.append(env)
        current.callers.append(w)
        current.readings += len(env.readings)
    return out


def merged(outgoing: _Outgoing) -> Envelope:
    envs = outgoing.envelopes
    if len(envs) == 1:
        return envs[0]
    keys = {e.routing_key for e in envs}
    key = keys.pop() if len(keys) == 1 else routing_key(factory_of(envs[0].routing_key), "mixed")
    return Envelope.merge(envs, key)


def connection_blocked(connection: AbstractRobustConnection) -> bool:
    """True while RabbitMQ blocks this connection's publishers (memory or disk alarm).

    aiormq tracks ``connection.blocked``/``unblocked`` in a private event; read it defensively.
    """
    inner = getattr(getattr(connection, "transport", None), "connection", None)
    event = getattr(inner, "_Connection__connection_unblocked", None)
    return isinstance(event, asyncio.Event) and not event.is_set()


class Publisher:
    """Publishes envelopes and returns only once RabbitMQ confirmed every one of them.

    Group commit: callers that pass ``merge_up_to`` while a flush is in flight wait for the next
    one, which publishes all of them at once, concurrent requests sharing AMQP messages (and so
    confirms) of up to ``merge_up_to`` readings; each caller returns when the confirms of the
    messages carrying its readings arrived, or raises if any of them failed.

    It also watches for back-pressure — the connection blocked by a broker alarm, the writer
    queue at its bound, or a recent publish refused — so that callers can refuse new data up
    front (HTTP 503 before reading the body) instead of timing out on a confirm.
    """

    def __init__(
        self,
        settings: AmqpSettings,
        connection: AbstractRobustConnection,
        *,
        watch_queue_every_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.connection = connection
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._dead: AbstractExchange | None = None
        self._watch_every = watch_queue_every_s
        self._watcher: asyncio.Task[None] | None = None
        self._queue_full = False
        self._refused_until = 0.0
        self._waiting: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._channel = await self.connection.channel(publisher_confirms=True)
        self._exchange, _, self._dead = await declare_topology(self._channel, self.settings)
        if self._watch_every:
            self._watcher = asyncio.create_task(self._watch_queue(self._watch_every))

    def pressure(self) -> str | None:
        """Why new data should be refused right now, or None."""
        if connection_blocked(self.connection):
            return "broker blocked publishers (resource alarm)"
        if self._queue_full:
            return "writer queue is full"
        if time.monotonic() < self._refused_until:
            return "broker refused recent data"
        return None

    async def _watch_queue(self, every_s: float) -> None:
        """Poll the writer queue depth (a passive declare) so a full queue is known early."""
        high = int(self.settings.queue_max_length * 0.95)
        channel: AbstractChannel | None = None
        while True:
            try:
                if channel is None or channel.is_closed:
                    channel = await self.connection.channel()
                queue = await channel.declare_queue(self.settings.queue, passive=True)
                depth = queue.declaration_result.message_count or 0
                full = depth >= high
                if full != self._queue_full:
                    log.warning(
                        "writer queue %s: %d messages (bound %d)",
                        "full" if full else "draining",
                        depth,
                        self.settings.queue_max_length,
                    )
                self._queue_full = full
            except PUBLISH_ERRORS as e:
                log.debug("queue depth check failed: %s", e)
                channel = None
            await asyncio.sleep(every_s)

    @property
    def ready(self) -> bool:
        return (
            self._channel is not None
            and not self._channel.is_closed
            and not self.connection.is_closed
        )

    async def publish(self, envelopes: list[Envelope], *, merge_up_to: int = 0) -> None:
        """Publish all, wait for all confirms. Raises :class:`BrokerUnavailable` otherwise.

        ``merge_up_to`` > 0: the envelopes may share AMQP messages of up to that many readings
        with other callers' (group commit); their messages are published in the next flush.
        """
        if merge_up_to <= 0:
            await self._confirmed(self._exchange, envelopes)
            return
        waiting = _Waiting(envelopes, merge_up_to, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop(), name="publisher-group-commit")
        # A caller cancelled meanwhile (client gone) cancels only its own future; the flush
        # skips it.
        await waiting.done

    async def _flush_loop(self) -> None:
        """One flush at a time; whatever arrived meanwhile goes in the next (no timer: a lone
        caller is published at once)."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._flush(batch)
        finally:
            self._flusher = None
            for w in self._waiting:  # only if the loop itself was cancelled
                if not w.done.done():
                    w.done.set_exception(BrokerUnavailable("publisher stopped"))

    async def _flush(self, batch: list[_Waiting]) -> None:
        confirmed = False
        try:
            outgoing = group(batch)
            results = await asyncio.gather(
                *(self._confirmed(self._exchange, [merged(o)]) for o in outgoing),
                return_exceptions=True,
            )
            for o, result in zip(outgoing, results, strict=True):
                for w in o.callers:
                    if isinstance(result, BaseException) and w.failed is None:
                        w.failed = result
            confirmed = True
        finally:
            # Success only for callers all of whose messages were confirmed; a flush cut short
            # (cancelled at shutdown, an unexpected error) confirms nobody.
            for w in batch:
                if w.done.done():
                    continue
                if confirmed and w.failed is None:
                    w.done.set_result(None)
                else:
                    w.done.set_exception(w.failed or BrokerUnavailable("publisher stopped"))

    async def _confirmed(
        self, exchange: AbstractExchange | None, envelopes: list[Envelope], dead: bool = False
    ) -> None:
        """Publish every envelope to ``exchange`` and wait for all the broker's confirms, within
        AMQP_CONFIRM_TIMEOUT_S; :class:`BrokerUnavailable` if any is refused or late."""
        if exchange is None:
            raise BrokerUnavailable("publisher not started")
        try:
            async with asyncio.timeout(self.settings.confirm_timeout_s):
                await asyncio.gather(
                    *(
                        exchange.publish(
                            to_message(env),
                            DEAD_LETTER_ROUTING_KEY if dead else env.routing_key,
                            mandatory=True,
                        )
                        for env in envelopes
                    )
                )
        except PUBLISH_ERRORS as e:
            if isinstance(e, aiormq.exceptions.DeliveryError) and not dead:
                # A nack: typically the writer queue at its bound (reject-publish).
                self._refused_until = time.monotonic() + 1.0
            raise BrokerUnavailable(f"{type(e).__name__}: {e}") from e

    async def dead_letter(self, envelopes: list[Envelope]) -> None:
        """Publish straight to ``telemetry.dead`` (confirmed), e.g. unparseable MQTT input."""
        await self._confirmed(self._dead, envelopes, dead=True)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
