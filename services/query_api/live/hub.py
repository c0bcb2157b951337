"""The process's one RabbitMQ feed, fanned out to every stream client of this process.

Every reading of the plant reaches this feed, most of them of factories and machines nobody
here watches. While every client is filed under factories or machines (a token scoped to
factories always is), a message whose body names none of the watched ids is acknowledged
without being decoded: the ids a client's filter can match are compared, as strings, with the
readings' ``machine_id``/``factory_id``, and a body that holds no reading with one of those
values does not contain that value's JSON string at all (bodies are :mod:`shared.envelope`'s
orjson encoding; the needle is the id's own orjson encoding). A client anywhere (no factory,
no machine), or more watched ids than ``MAX_NEEDLES``, turns the shortcut off.

What skipping must not change: a client resuming from its ``Last-Event-ID`` is replayed only
what this process has seen without a hole for its ids (else it gets a ``gap``), an id stays
watched ``LINGER_S`` after its last client left (a reconnecting client resumes without a gap),
and a machine whose readings may have been skipped is forgotten rather than called offline.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import orjson
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
    TYPES,
    LiveEvent,
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
# Offline machines and the heartbeats of quiet streams are looked for this often.
PRESENCE_SWEEP_S = 1.0
# Watched ids searched for in a message body before decoding it; beyond, every body is decoded.
MAX_NEEDLES = 16
# An id stays watched this long after its last client left: a client reconnecting within it
# (a new token, a network blip) resumes from its Last-Event-ID without a gap.
LINGER_S = 60.0
# Slots of the flush period (``LIVE_FLUSH_MS``): the streams take turns, one slot per tick.
FLUSH_SLOTS = 10
SKIPPED = Counter(
    "millrace_live_skipped_total", "Feed messages acknowledged undecoded: no client watches them"
)


def _needle(value: str) -> bytes:
    """``value`` as a JSON string, exactly as orjson writes it inside a message body."""
    return orjson.dumps(value)


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
        # Each client is filed under its most selective filter (its machines, else its
        # factories, else anywhere): an event meets only the clients that may want it, so a
        # reading costs nothing per client of other factories, however many there are.
        self._by_machine: dict[str, set[Subscriber]] = {}
        self._by_factory: dict[str, set[Subscriber]] = {}
        self._anywhere: set[Subscriber] = set()
        self._counted = {t: EVENTS.labels(t) for t in TYPES}
        # machine id -> [newest reading ns, factory, location, online, skips when last seen]
        self._presence: dict[str, list[Any]] = {}
        # The skipping shortcut (module docstring). Watched ids: ("m"|"f", id) -> the event
        # seq since when no message holding it was skipped; ids whose last client left, until
        # when they stay watched (monotonic s); the needles, None while every body is decoded
        # (and since when, as an event seq); how many messages were skipped so far.
        self._since: dict[tuple[str, str], int] = {}
        self._lingering: dict[tuple[str, str], float] = {}
        self._needles: list[bytes] | None = None
        self._all_since: int | None = 0
        self._skips = 0
        self._last_skip_seq = -1  # the event seq when the last message was skipped
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._queue: AbstractQueue | None = None
        self._sweeper: asyncio.Task[None] | None = None
        # Streams with events waiting for their next flush (``LiveSettings.flush_ms``), by
        # slot: each stream has one of ``FLUSH_SLOTS`` slots of the period, and the hub flushes
        # one slot per tick.
        self.flush_s = settings.flush_ms / 1000
        self._dirty: list[list[Subscriber]] = [[] for _ in range(FLUSH_SLOTS)]
        self._next_slot = 0
        self._flusher: asyncio.Task[None] | None = None
        self._rewatch()

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
        if self.flush_s > 0:
            self._flusher = asyncio.create_task(self._flush_every())
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
        for task in (self._sweeper, self._flusher):
            if task is not None:
                task.cancel()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    # -- clients -------------------------------------------------------------------------------

    @property
    def client_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self, sub: Subscriber, last_event_id: str | None) -> None:
        if last_event_id:
            self._resume(sub, last_event_id)
        if self.flush_s > 0:
            sub.notify = self._notified
            sub.slot = self._next_slot
            self._next_slot = (self._next_slot + 1) % FLUSH_SLOTS
        self._subscribers.add(sub)
        for group in self._groups(sub, create=True):
            group.add(sub)
        self._rewatch()
        CLIENTS.set(len(self._subscribers))

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub not in self._subscribers:
            return
        self._subscribers.discard(sub)
        for group in self._groups(sub, create=False):
            group.discard(sub)
        until = time.monotonic() + LINGER_S
        for kind, index in (("m", self._by_machine), ("f", self._by_factory)):
            for k in [k for k, g in index.items() if not g]:
                del index[k]
                self._lingering[(kind, k)] = until
        self._rewatch()
        CLIENTS.set(len(self._subscribers))

    # -- coalescing: one write per stream per flush, not one per event -----------------------

    def _notified(self, sub: Subscriber) -> None:
        """The first event since ``sub`` last took: at once when the stream has been quiet
        for a flush period (a lone event, an alert, is not held back), else at its slot's next
        flush with whatever else comes until then."""
        if time.monotonic() - sub.taken_at >= self.flush_s:
            sub.wake()
        else:
            self._dirty[sub.slot].append(sub)

    def flush(self, slot: int | None = None) -> None:
        """Wake the streams with events held for the flush of ``slot`` (None: every slot);
        each writes what it holds in one go."""
        for s in range(FLUSH_SLOTS) if slot is None else (slot,):
            dirty, self._dirty[s] = self._dirty[s], []
            for sub in dirty:
                sub.wake()

    async def _flush_every(self) -> None:
        """One slot per tick, every slot once a period. Streams that got the same events at
        the same moment (a board of many screens) would otherwise all write in the same tick:
        a burst of wake-ups and socket writes twice a second that holds a core for tens of
        milliseconds (and the clients' machines with it); spread over the slots, the same
        writes come in small steps."""
        tick = self.flush_s / FLUSH_SLOTS
        slot = 0
        while True:
            await asyncio.sleep(tick)
            self.flush(slot)
            slot = (slot + 1) % FLUSH_SLOTS

    # -- what the feed may skip ----------------------------------------------------------------

    def _watched(self) -> set[tuple[str, str]]:
        keys = {("m", k) for k in self._by_machine} | {("f", k) for k in self._by_factory}
        return keys | self._lingering.keys()

    def _rewatch(self) -> None:
        """Recompute the needles after the clients (or the lingering ids) changed."""
        keys = self._watched()
        everything = bool(self._anywhere) or len(keys) > MAX_NEEDLES
        was_all = self._all_since
        since = {}
        for key in keys:
            start = self._since.get(key)
            if start is None:
                start = self._seq if was_all is None else was_all
            elif was_all is not None:
                start = min(start, was_all)
            since[key] = start
        self._since = since
        if everything:
            self._all_since = self._seq if was_all is None else was_all
            self._needles = None
        else:
            self._all_since = None
            self._needles = [_needle(k) for _, k in sorted(keys)]

    def _expire_lingering(self, now: float) -> None:
        gone = [k for k, until in self._lingering.items() if until <= now]
        for k in gone:
            del self._lingering[k]
        if gone:
            self._rewatch()

    def skippable(self, body: bytes) -> bool:
        """True when no reading in ``body`` can match a watched id (module docstring)."""
        needles = self._needles
        return needles is not None and not any(n in body for n in needles)

    def _complete_after(self, sub: Subscriber, seq: int) -> bool:
        """Whether every message that could hold an event for ``sub`` after event ``seq`` was
        decoded (nothing of its ids skipped since then)."""
        if self._last_skip_seq < seq:
            return True  # nothing skipped at all since
        if self._all_since is not None and self._all_since < seq:
            return True
        f = sub.filter
        keys = (
            [("m", k) for k in f.machine_ids]
            if f.machine_ids
            else [("f", k) for k in f.factory_ids]
            if f.factory_ids
            else None
        )
        if keys is None:
            return False
        return all((start := self._since.get(k)) is not None and start < seq for k in keys)

    def _observed(self, machine: str, factory: str) -> bool:
        """Whether no message of this machine is being skipped now."""
        return (
            self._needles is None or ("m", machine) in self._since or ("f", factory) in self._since
        )

    def _groups(self, sub: Subscriber, *, create: bool) -> list[set[Subscriber]]:
        f = sub.filter
        index, keys = (
            (self._by_machine, f.machine_ids)
            if f.machine_ids
            else (self._by_factory, f.factory_ids)
            if f.factory_ids
            else (None, frozenset[str]())
        )
        if index is None:
            return [self._anywhere]
        if create:
            return [index.setdefault(k, set()) for k in keys]
        return [index[k] for k in keys if k in index]

    def _resume(self, sub: Subscriber, last_event_id: str) -> None:
        """Replay what the client missed when this process still holds it; else a gap."""
        epoch, _, seq_text = last_event_id.partition("-")
        oldest = self._recent[0].seq if self._recent else self._seq + 1
        if epoch != self.epoch or not seq_text.isdigit() or int(seq_text) < oldest - 1:
            sub.gap("cannot resume: fill from history")
            return
        after = int(seq_text)
        if not self._complete_after(sub, after):
            sub.gap("cannot resume: events of this stream were not kept: fill from history")
            return
        for ev in self._recent:
            if ev.seq > after:
                sub.offer(ev)

    # -- feed ----------------------------------------------------------------------------------

    def _event(
        self,
        kind: str,
        data: dict[str, Any] | Callable[[], dict[str, Any]],
        machine: str,
        factory: str,
        location: str,
        ts: int,
    ) -> LiveEvent:
        self._seq += 1
        ev = LiveEvent(
            self._seq, kind, machine, factory, location, ts, f"{self.epoch}-{self._seq}", data
        )
        self._recent.append(ev)
        return ev

    def publish(self, events: Iterable[LiveEvent]) -> None:
        """Hand events to every matching client; never waits, whatever the clients do."""
        dropped = 0
        counts = dict.fromkeys(TYPES, 0)
        anywhere, by_machine, by_factory = self._anywhere, self._by_machine, self._by_factory
        for ev in events:
            counts[ev.type] += 1
            for group in (anywhere, by_machine.get(ev.machine_id), by_factory.get(ev.factory_id)):
                if group:
                    for sub in group:
                        if not sub.offer(ev):
                            dropped += 1
        for kind, n in counts.items():
            if n:
                self._counted[kind].inc(n)
        if dropped:
            DROPPED.inc(dropped)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        key = message.routing_key or ""
        try:
            if key.startswith("reading.") and self.skippable(message.body):
                self._skips += 1
                self._last_skip_seq = self._seq
                SKIPPED.inc()
            else:
                self.publish(self.events_of(key, message.body))
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
            lazy = partial(reading_data, r, envelope.source)  # built if a client wants it
            out.append(self._event(READING, lazy, mid, factory, location, ts))
            seen = self._presence.get(mid)
            if seen is None:
                seen = self._presence[mid] = [ts, factory, location, False, self._skips]
            elif ts > seen[0]:
                seen[0] = ts
                seen[4] = self._skips
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
        """Machines silent longer than the online threshold go offline (once). One whose
        readings may have been skipped since it was last seen is forgotten instead (its next
        reading seen says it is online, as after a start)."""
        out = []
        forget = []
        for mid, seen in self._presence.items():
            if seen[3] and now_ns - seen[0] > self.online_threshold_ns:
                if seen[4] != self._skips and not self._observed(mid, seen[1]):
                    forget.append(mid)
                    continue
                seen[3] = False
                out.append(self._status(mid, seen, online=False))
        for mid in forget:
            del self._presence[mid]
        return out

    async def _sweep_presence(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_SWEEP_S)
            now = time.monotonic()
            self._expire_lingering(now)
            for sub in self._subscribers:
                sub.wake_if_due(now)  # heartbeats of quiet streams
            self.publish(self.sweep(time.time_ns()))
