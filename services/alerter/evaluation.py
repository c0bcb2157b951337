"""Reads ``telemetry.alerter`` in order and turns rule transitions into alerts.

Why a single-active-consumer quorum queue: every replica consumes it, RabbitMQ delivers to one
of them at a time and hands over to the next when it goes away, so the readings of a machine are
always evaluated in order by one alerter, with fail-over and no plugin on the broker. Evaluation
is a dictionary lookup and a comparison per reading, far below what one process can do, so one
active consumer is not the bottleneck; the other replicas are hot standbys. (Should it become
one, RabbitMQ's consistent-hash exchange can spread machines over several such queues.)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from prometheus_client import Counter
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from services.alerter import consuming
from services.alerter.rules import Action, Evaluator
from services.alerter.settings import Settings
from services.alerter.store import AlertStore
from shared import alert_events, broker
from shared.db import DB_UNAVAILABLE
from shared.envelope import Envelope
from shared.machines import MachineCache, valid_uuid

log = logging.getLogger(__name__)

READINGS = Counter("millrace_alerter_readings_total", "Readings evaluated")
TRANSITIONS = Counter("millrace_alerter_alerts_total", "Alerts opened or cleared", ["event"])


def readings_queue_arguments(settings: Settings) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-single-active-consumer": True,
        "x-max-length": settings.alerter.queue_max_length,
        # A stopped alerter must never make ingest refuse data: drop the oldest readings.
        "x-overflow": "drop-head",
        "x-dead-letter-exchange": settings.amqp.dead_letter,
        "x-dead-letter-routing-key": broker.DEAD_LETTER_ROUTING_KEY,
        "x-delivery-limit": settings.amqp.delivery_limit,
    }


class RuleEvaluation:
    def __init__(
        self,
        settings: Settings,
        connection: AbstractRobustConnection,
        store: AlertStore,
        evaluator: Evaluator,
        machines: MachineCache,
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.store = store
        self.evaluator = evaluator
        self.machines = machines
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._queue: AbstractQueue | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._channel = await self.connection.channel(publisher_confirms=True)
        await self._channel.set_qos(prefetch_count=self.settings.alerter.prefetch)
        self._exchange, _, _ = await broker.declare_topology(self._channel, self.settings.amqp)
        self._queue = await self._channel.declare_queue(
            self.settings.alerter.queue,
            durable=True,
            arguments=readings_queue_arguments(self.settings),
        )
        await self._queue.bind(self._exchange, routing_key="reading.#")
        # One message at a time, in delivery order: that is the ordering guarantee.
        self._task = asyncio.create_task(consuming.in_order(self._queue, self.handle))

    @property
    def consuming(self) -> bool:
        return self._task is not None and not self._task.done() and self.ready

    @property
    def ready(self) -> bool:
        return self._channel is not None and not self._channel.is_closed

    @property
    def exchange(self) -> AbstractExchange:
        assert self._exchange is not None
        return self._exchange

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def handle(self, message: AbstractIncomingMessage) -> None:
        key = message.routing_key or ""
        envelope = await consuming.decoded(message, lambda b: Envelope.decode(b, key), "alerter")
        if envelope is None:
            return
        try:
            await self.evaluate(envelope.readings)
        except DB_UNAVAILABLE + broker.PUBLISH_ERRORS as e:
            # Retried already; give it back (the delivery limit dead-letters a poison one).
            log.error("alerter: could not record alerts, message returned: %s", e)
            await message.nack(requeue=True)
            return
        await message.ack()

    async def registered(self, readings: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The readings to judge, in order per machine, each with its machine's registered
        factory (None for a machine no longer registered: only rules of every factory apply).

        The readings are the message's own, just decoded: the factory is set on them, not on
        copies, and each machine is looked up (and its id checked) once per message."""
        usable = [r for r in readings if "machine_id" in r and "ts" in r]
        ids = {str(r["machine_id"]) for r in usable}
        machines = await self.machines.get_many(sorted(m for m in ids if valid_uuid(m)))
        factories = {m: machine.factory_id for m, machine in machines.items() if machine}
        for r in usable:
            r["factory_id"] = factories.get(str(r["machine_id"]))
        usable.sort(key=lambda r: (str(r["machine_id"]), int(r["ts"])))
        return usable

    async def evaluate(self, readings: list[dict[str, Any]]) -> None:
        judged = await self.registered(readings)
        for reading in judged:
            for action in self.evaluator.evaluate(reading):
                try:
                    alert, event = await self._record(action)
                except BaseException:
                    self.evaluator.undo(action)
                    raise
                self.evaluator.recorded(action)
                if alert is not None:
                    TRANSITIONS.labels(event).inc()
                    log.info(
                        "alert %s %s: %s on %s (%s)",
                        alert["id"],
                        event,
                        action.rule.name,
                        alert["machine_id"],
                        action.value,
                    )
        READINGS.inc(len(judged))

    async def _record(self, action: Action) -> tuple[dict[str, Any] | None, str]:
        """Store the transition and announce it; bounded retries while a dependency is down."""
        event = "opened" if action.kind == "open" else "cleared"
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(DB_UNAVAILABLE + broker.PUBLISH_ERRORS),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_attempt(5),
            reraise=True,
        ):
            with attempt:
                if action.kind == "open":
                    alert = await self.store.open(action)
                else:
                    alert = await self.store.clear(action)
                if alert is not None:
                    await alert_events.publish(self.exchange, event, alert)
        return alert, event
