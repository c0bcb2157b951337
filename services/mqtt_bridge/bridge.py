"""The bridge: edge messages in groups → validated → confirmed by RabbitMQ → acked.

Pipeline (all on the asyncio loop)::

    edge queue (AMQP) ──▶ inbox ──collect──▶ group ──task──▶ in-flight groups
                                                               │ (FIFO)
             basic.ack up to the group's last tag ◀── acker ◀──┘

A group is validated once; its readings and its dead letters are published with publisher
confirms, retried with bounded backoff for as long as RabbitMQ (or the machine registry) is
unavailable, and only then are its edge messages acknowledged, in the order they arrived. Several
groups may be publishing at once so that confirm latency does not cap throughput. The edge
already PUBACKed the gateway when the message reached its quorum queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aio_pika.abc import AbstractRobustConnection
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from services.mqtt_bridge import metrics
from services.mqtt_bridge.grouping import collect
from services.mqtt_bridge.link import EdgeLink, Inbound
from services.mqtt_bridge.settings import Settings
from services.mqtt_bridge.status import StatusLink
from services.mqtt_bridge.triage import (
    classify,
    dead_letters,
    envelopes,
    new_request_id,
    resolve,
)
from shared.broker import Publisher
from shared.db import DB_UNAVAILABLE
from shared.errors import BrokerUnavailable
from shared.machines import Machine, MachineCache
from shared.mqtt_topics import TopicTemplate
from shared.readings import ValidationContext

log = logging.getLogger(__name__)
T = TypeVar("T")

# Failures that pass: the group is retried, never acknowledged meanwhile, never dropped.
TRANSIENT: tuple[type[BaseException], ...] = (BrokerUnavailable, *DB_UNAVAILABLE)


@dataclass(slots=True)
class Totals:
    published: int = 0
    dead_lettered: int = 0
    ignored: int = 0
    readings: int = 0
    abandoned: int = 0


class Bridge:
    def __init__(
        self,
        settings: Settings,
        publisher: Publisher,
        machines: MachineCache,
        connection: AbstractRobustConnection | None = None,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.machines = machines
        self.totals = Totals()
        self._connection = connection
        self._template = TopicTemplate(settings.edge.topic_template)
        limits = settings.limits
        self._ctx = ValidationContext(
            extra_fields=dict(limits.extra_fields),
            max_future_skew_s=limits.max_future_skew_s,
            max_batch_items=limits.max_batch_items,
            max_readings_per_item=limits.max_readings_per_item,
        )
        self._inbox: asyncio.Queue[Inbound] = asyncio.Queue()
        self._in_flight: asyncio.Queue[tuple[list[Inbound], asyncio.Task[None]]] = asyncio.Queue(
            maxsize=settings.bridge.groups_in_flight
        )
        self._link: EdgeLink | None = None
        self._status: StatusLink | None = None
        self._grouper: asyncio.Task[None] | None = None
        self._acker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Start the pipeline, consume the edge queue, and say ``online`` on the edge."""
        assert self._connection is not None
        link = EdgeLink(self.settings, self._connection, self._inbox.put_nowait)
        self.run_pipeline(link)
        await link.start()
        self._status = StatusLink(self.settings)
        self._status.start()

    def run_pipeline(self, link: EdgeLink) -> None:
        """Start grouping, publishing and acknowledging for ``link`` (tests pass a fake)."""
        self._link = link
        self._grouper = asyncio.create_task(self._group_loop(), name="mqtt-bridge-grouper")
        self._acker = asyncio.create_task(self._ack_loop(), name="mqtt-bridge-acker")

    async def stop(self, timeout_s: float) -> None:
        """Stop taking messages, finish the groups in flight (ack them), then go ``offline``.

        Groups that cannot be confirmed within the timeout (RabbitMQ down) are abandoned
        unacknowledged: the edge queue keeps them and redelivers them.
        """
        deadline = time.monotonic() + timeout_s
        if self._link is not None:
            await self._link.stop_consuming()
        if self._grouper is not None:
            self._grouper.cancel()
            await asyncio.gather(self._grouper, return_exceptions=True)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic() - 1.0)):
                await self._in_flight.join()
        except TimeoutError:
            log.error(
                "shutdown: %d group(s) not confirmed by RabbitMQ in time; their MQTT messages"
                " stay unacknowledged and will be redelivered",
                self._in_flight.qsize(),
            )
            while not self._in_flight.empty():
                group, task = self._in_flight.get_nowait()
                task.cancel()
                await self._abandon(group)
                self._in_flight.task_done()
        if self._acker is not None:
            self._acker.cancel()
            await asyncio.gather(self._acker, return_exceptions=True)
        # Messages still in the inbox were never grouped: closing the channel returns them.
        self.totals.abandoned += self._inbox.qsize()
        if self._link is not None:
            await self._link.close()
        if self._status is not None:
            await self._status.stop(max(1.0, deadline - time.monotonic()))
        t = self.totals
        log.info(
            "bridge stopped: %d messages published (%d readings), %d dead-lettered,"
            " %d ignored, %d left for redelivery",
            t.published,
            t.readings,
            t.dead_lettered,
            t.ignored,
            t.abandoned,
        )

    @property
    def edge_ready(self) -> bool:
        return self._link is not None and self._link.ready

    # ------------------------------------------------------------------ pipeline
    async def _group_loop(self) -> None:
        s = self.settings.bridge
        while True:
            group = await collect(self._inbox, s.group_max_messages, s.group_wait_ms / 1000)
            metrics.GROUP_MESSAGES.observe(len(group))
            task = asyncio.create_task(self._process(group))
            try:
                await self._in_flight.put((group, task))
            except asyncio.CancelledError:  # stopping while the pipeline was full
                task.cancel()
                await asyncio.shield(self._abandon(group))
                raise

    async def _ack_loop(self) -> None:
        assert self._link is not None
        while True:
            group, task = await self._in_flight.get()
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:  # shutdown gave up on this group
                task.cancel()
                await asyncio.shield(self._abandon(group))
                self._in_flight.task_done()
                raise
            if task.cancelled():
                await self._abandon(group)
            elif (error := task.exception()) is not None:
                log.error(
                    "group of %d MQTT messages failed unexpectedly; not acknowledged",
                    len(group),
                    exc_info=error,
                )
                await self._abandon(group)
            else:
                await self._link.ack(group)
            self._in_flight.task_done()

    async def _abandon(self, group: list[Inbound]) -> None:
        self.totals.abandoned += len(group)
        if self._link is not None:
            await self._link.release(group)

    async def _process(self, group: list[Inbound]) -> None:
        started = time.perf_counter()
        request_id = new_request_id()
        # The edge authorised the publishing gateway for these machines; which gateway it was
        # does not travel with the message, so readings are stamped with the bridge's id.
        gateway_id = self.settings.mqtt.client_id
        triage = classify(group, self._template, self._ctx.with_now())
        ids = triage.machine_ids()
        known: dict[str, Machine | None] = {}
        if ids:
            known = await self._retrying(
                "machine registry", len(group), lambda: self.machines.get_many(ids)
            )
        readings, published, unknown = resolve(triage, known)
        dead = triage.dead + unknown
        log.debug(
            "group %s validated: %d messages, %d readings, %d invalid, %d ignored",
            request_id,
            len(group),
            len(readings),
            len(dead),
            len(triage.ignored),
            extra={"request_id": request_id},
        )
        data = envelopes(
            readings,
            gateway_id=gateway_id,
            request_id=request_id,
            per_message=self.settings.limits.readings_per_message,
        )
        letters = dead_letters(dead, gateway_id=gateway_id, request_id=request_id)
        publishing = []
        if data:
            publishing.append(
                self._retrying("rabbitmq", len(group), lambda: self.publisher.publish(data))
            )
        if letters:
            publishing.append(
                self._retrying("rabbitmq", len(group), lambda: self.publisher.dead_letter(letters))
            )
        await asyncio.gather(*publishing)

        metrics.GROUP_SECONDS.observe(time.perf_counter() - started)
        metrics.READINGS.inc(len(readings))
        metrics.MESSAGES.labels("published").inc(len(published))
        metrics.MESSAGES.labels("dead_lettered").inc(len(dead))
        metrics.MESSAGES.labels("ignored").inc(len(triage.ignored))
        reasons: Counter[str] = Counter()
        for d in dead:
            reasons[d.reason.value] += 1
            metrics.DEAD_LETTERS.labels(d.reason.value).inc()
            log.debug(
                "dead-lettered MQTT message on %s: %s (%s)",
                d.message.topic,
                d.reason.value,
                d.error,
                extra={"request_id": request_id, "reason": d.reason.value},
            )
        if reasons:
            log.info(
                "dead-lettered %d MQTT message(s) to %s: %s",
                len(dead),
                self.settings.amqp.dead_letter,
                ", ".join(f"{reason}={n}" for reason, n in sorted(reasons.items())),
                extra={"request_id": request_id},
            )
        t = self.totals
        t.published += len(published)
        t.readings += len(readings)
        t.dead_lettered += len(dead)
        t.ignored += len(triage.ignored)

    async def _retrying(self, what: str, messages: int, attempt: Callable[[], Awaitable[T]]) -> T:
        """Call until it succeeds: bounded exponential backoff, a WARNING per failed attempt."""

        def warn(state: RetryCallState) -> None:
            metrics.PUBLISH_RETRIES.inc()
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s unavailable (%s); retrying a group of %d MQTT messages in %.1f s"
                " (attempt %d), not acknowledging them meanwhile",
                what,
                error,
                messages,
                state.upcoming_sleep,
                state.attempt_number,
                extra={"dependency": what},
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT),
            wait=wait_exponential(multiplier=0.1, max=self.settings.bridge.retry_max_s),
            before_sleep=warn,
            reraise=True,
        )
        async for trying in retrying:
            with trying:
                result = await attempt()
                if trying.retry_state.attempt_number > 1:
                    log.info(
                        "%s is back after %d attempts", what, trying.retry_state.attempt_number
                    )
                return result
        raise AssertionError("unreachable")  # pragma: no cover
