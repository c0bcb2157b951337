"""The process's one RabbitMQ feed, fanned out to every stream client of this process."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from prometheus_client import Counter, Gauge

from services.query_api.live.events import (
    ALERT,
    READING,
    STATUS,
    LiveEvent,
    frame,
    ns_to_iso,
    reading_data,
)
from services.query_api.live.settings import LiveSettings
from services.query_api.live.subscriber import Subscriber
from shared import alert_events, broker
from shared.envelope import Envelope
from shared.settings import AmqpSettings

log = logging.getLogger(__name__)

CLIENTS = Gauge("millrace_live_clients", "Live stream clients connected to this process")
EVENTS = Counter("millrace_live_events_total", "Live events fanned out", ["type"])
DROPPED = Counter("millrace_live_dropped_total", "Live events a slow client did not get")
PRESENCE_SWEEP_S = 1.0


class LiveHub:
    def __init__(
        self,
        amqp: AmqpSettings,
        settings: LiveSettings,
        connection: AbstractRobustConnection,
        online_threshold_s: float,
    ) -> None:
        self.amqp = amqp
        self.settings = settings
        self.connection = connection
        self.online_threshold_ns = int(online_threshold_s * 1e9)
        # Event ids are "<epoch>-<seq>": an id from another process or an earlier start of
        # this one cannot be resumed from (the client is told with a gap instead).
        self.epoch = uuid.uuid4().hex[:8]
        self._seq = 0
        self._recent: deque[LiveEvent] = deque(maxlen=settings.replay_events or None)
        self._subscribers: set[Subscriber] = set()
        # machine id -> [newest reading ns, factory, location, online]
        self._presence: dict[str, list[Any]] = {}
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._queue: AbstractQueue | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Confirms: the alerts API announces its changes on this channel's exchange.
        self._channel = await self.connection.channel(publisher_confirms=True)
        await self._channel.set_qos(prefetch_count=self.settings.prefetch)
        exchange = self._exchange = await self._channel.declare_exchange(
            self.amqp.exchange, "topic", durable=True
        )
        name = f"live.query_api.{socket.gethostname()}.{os.getpid()}.{self.epoch}"
        self._queue = await self._channel.declare_queue(
            name,
            durable=False,
            exclusive=True,
            auto_delete=True,
            arguments={
                "x-max-length": self.settings.queue_max_length,
                "x-overflow": "drop-head",
            },
        )
        await self._queue.bind(exchange, routing_key="reading.#")
        await self._queue.bind(exchange, routing_key=alert_events.BINDING)
        await self._queue.consume(self._on_message)
        self._sweeper = asyncio.create_task(self._sweep_presence())
        log.info("live feed bound: queue %s", name)

    @property
    def exchange(self) -> AbstractExchange:
        """The telemetry exchange, for announcing alert changes made through the API."""
        assert self._exchange is not None, "hub not started"
        return self._exchange

    @property
    def ready(self) -> bool:
        return self._channel is not None and not self._channel.is_closed

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    # -- clients -------------------------------------------------------------------------------

    @property
    def client_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self, sub: Subscriber, last_event_id: str | None) -> None:
        if last_event_id:
            self._resume(sub, last_event_id)
        self._subscribers.add(sub)
        CLIENTS.set(len(self._subscribers))

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
        CLIENTS.set(len(self._subscribers))

    def _resume(self, sub: Subscriber, last_event_id: str) -> None:
        """Replay what the client missed when this process still holds it; else a gap."""
        epoch, _, seq_text = last_event_id.partition("-")
        oldest = self._recent[0].seq if self._recent else self._seq + 1
        if epoch != self.epoch or not seq_text.isdigit() or int(seq_text) < oldest - 1:
            sub.gap("cannot resume: fill from history")
            return
        after = int(seq_text)
        for ev in self._recent:
            if ev.seq > after:
                sub.offer(ev)

    # -- feed ----------------------------------------------------------------------------------

    def _event(
        self, kind: str, data: dict[str, Any], machine: str, factory: str, location: str, ts: int
    ) -> LiveEvent:
        self._seq += 1
        ev = LiveEvent(
            seq=self._seq,
            type=kind,
            machine_id=machine,
            factory_id=factory,
            location=location,
            ts_ns=ts,
            frame=frame(f"{self.epoch}-{self._seq}", kind, data),
        )
        self._recent.append(ev)
        return ev

    def publish(self, events: Iterable[LiveEvent]) -> None:
        """Hand events to every matching client; never waits, whatever the clients do."""
        dropped = 0
        subscribers = list(self._subscribers)
        for ev in events:
            EVENTS.labels(ev.type).inc()
            for sub in subscribers:
                if not sub.offer(ev):
                    dropped += 1
        if dropped:
            DROPPED.inc(dropped)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            self.publish(self.events_of(message.routing_key or "", message.body))
        except (ValueError, KeyError, TypeError) as e:
            log.warning("live feed: unreadable message %s: %s", message.routing_key, e)
        try:
            await message.ack()
        except broker.PUBLISH_ERRORS as e:
            log.debug("live feed ack failed: %s", e)

    def events_of(self, routing_key: str, body: bytes) -> list[LiveEvent]:
        if routing_key.startswith(alert_events.ROUTING_PREFIX + "."):
            event, alert = alert_events.decode(body)
            data = {"event": event, **alert}
            return [
                self._event(
                    ALERT,
                    data,
                    str(alert.get("machine_id", "")),
                    str(alert.get("factory_id") or ""),
                    str(alert.get("location") or ""),
                    time.time_ns(),
                )
            ]
        envelope = Envelope.decode(body, routing_key)
        now = time.time_ns()
        out: list[LiveEvent] = []
        for r in envelope.readings:
            mid, factory, location, ts = (
                str(r["machine_id"]),
                str(r.get("factory_id") or ""),
                str(r.get("location") or ""),
                int(r["ts"]),
            )
            out.append(
                self._event(READING, reading_data(r, envelope.source), mid, factory, location, ts)
            )
            seen = self._presence.get(mid)
            if seen is None:
                seen = self._presence[mid] = [ts, factory, location, False]
            elif ts > seen[0]:
                seen[0] = ts
            if not seen[3] and now - seen[0] <= self.online_threshold_ns:
                seen[3] = True
                out.append(self._status(mid, seen, online=True))
        return out

    def _status(self, machine: str, seen: list[Any], *, online: bool) -> LiveEvent:
        data = {
            "machine_id": machine,
            "factory_id": seen[1],
            "location": seen[2],
            "online": online,
            "last_seen": ns_to_iso(seen[0]),
        }
        return self._event(STATUS, data, machine, seen[1], seen[2], seen[0])

    def sweep(self, now_ns: int) -> list[LiveEvent]:
        """Machines silent longer than the online threshold go offline (once)."""
        out = []
        for mid, seen in self._presence.items():
            if seen[3] and now_ns - seen[0] > self.online_threshold_ns:
                seen[3] = False
                out.append(self._status(mid, seen, online=False))
        return out

    async def _sweep_presence(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_SWEEP_S)
            self.publish(self.sweep(time.time_ns()))
