"""Archive consumer: ``telemetry.dead`` → PostgreSQL ``dead_letters``, ack after the commit.

Runs inside query_api's lifespan; several query_api copies are competing consumers of the one
quorum queue, and the unique ``message_id`` makes a redelivered message a no-op, so at-least-once
delivery never archives a letter twice.

PostgreSQL down: each insert is retried with backoff and nothing is acknowledged meanwhile; the
prefetch window bounds how many messages wait, the rest stay in the queue. A row PostgreSQL
refuses as data (never transient) is archived without its readings and payload rather than
blocking the queue. Stop: cancel the consumer, give in-flight inserts ``drain_timeout_s``, close
the channel (whatever is unacknowledged returns to the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import psycopg
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from psycopg_pool import AsyncConnectionPool
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from services.query_api.deadletters import store
from services.query_api.deadletters.metrics import ARCHIVED, set_pending
from services.query_api.deadletters.records import (
    LetterRecord,
    record_from_message,
    undecodable_record,
)
from shared import broker
from shared.db import DB_UNAVAILABLE
from shared.errors import MillraceError
from shared.settings import AmqpSettings

log = logging.getLogger(__name__)


class ArchiveStopping(MillraceError):
    """The archive is stopping while PostgreSQL is unavailable: leave the message unacked."""


class DeadLetterArchive:
    def __init__(
        self,
        settings: AmqpSettings,
        connection: AbstractRobustConnection,
        pool: AsyncConnectionPool,
        *,
        prefetch: int = 50,
        drain_timeout_s: float = 10.0,
        gauge_interval_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.pool = pool
        self.prefetch = prefetch
        self.drain_timeout_s = drain_timeout_s
        self.gauge_interval_s = gauge_interval_s
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[object]] = set()
        self._gauge: asyncio.Task[None] | None = None
        self.archived = 0
        self.duplicates = 0

    async def start(self) -> None:
        self._channel = await self.connection.channel()
        await self._channel.set_qos(prefetch_count=self.prefetch)
        await broker.declare_topology(self._channel, self.settings)
        # Declared again (same arguments, idempotent) to get the queue object to consume from.
        self._queue = await self._channel.declare_queue(
            self.settings.dead_letter, durable=True, arguments={"x-queue-type": "quorum"}
        )
        self._consumer_tag = await self._queue.consume(self._on_message, no_ack=False)
        self._gauge = asyncio.create_task(self._gauge_loop(), name="deadletter-gauge")
        log.info("archiving %s (prefetch %d)", self.settings.dead_letter, self.prefetch)

    @property
    def consuming(self) -> bool:
        return broker.consuming(self._channel, self._consumer_tag) and not self.connection.is_closed

    async def stop(self) -> None:
        self._stopping.set()
        await broker.cancel_consumer(self._queue, self._consumer_tag)
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=self.drain_timeout_s)
            for task in pending:
                task.cancel()
        if self._gauge is not None:
            self._gauge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gauge
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        log.info(
            "dead-letter archive stopped: %d archived, %d redeliveries ignored",
            self.archived,
            self.duplicates,
        )

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            record = self._record(message)
            # Ack only after the INSERT committed; any failure puts the message back.
            async with message.process(requeue=True):
                inserted = await self._store(record)
        except ArchiveStopping:
            log.info("stopping: dead letter %s left in the queue", message.message_id)
            return
        except broker.PUBLISH_ERRORS as e:
            # Stored but not acknowledged: the redelivery will be recognised by its message id.
            log.warning("ack failed (%s); the letter will be redelivered", e)
            return
        finally:
            if task is not None:
                self._inflight.discard(task)
        if inserted:
            self.archived += 1
            ARCHIVED.labels(record.reason, record.source).inc()
            log.debug("dead letter archived: %s (%s)", record.reason, record.message_id)
        else:
            self.duplicates += 1

    @staticmethod
    def _record(message: AbstractIncomingMessage) -> LetterRecord:
        now = datetime.now(UTC)
        try:
            return record_from_message(
                message.body,
                message_id=message.message_id,
                headers=message.headers or {},
                routing_key=message.routing_key or "",
                now=now,
            )
        except Exception:  # a body that trips a bug must not block the queue: keep it raw
            log.exception("could not read dead letter %s; archived raw", message.message_id)
            return undecodable_record(message.body, message.message_id, now)

    async def _store(self, record: LetterRecord) -> bool:
        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "archiving a dead letter failed (attempt %d, %s); retrying, nothing acked",
                state.attempt_number,
                exc,
                extra={"dependency": "postgres", "attempt": state.attempt_number},
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(DB_UNAVAILABLE),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=lambda state: self._stopping.is_set(),
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        return await store.insert(self.pool, record)
                    except psycopg.DataError as e:
                        log.error("dead letter %s refused as data (%s)", record.message_id, e)
                        return await store.insert(self.pool, record.stripped(str(e)))
        except DB_UNAVAILABLE as e:
            raise ArchiveStopping(str(e)) from e
        raise AssertionError("unreachable")  # pragma: no cover

    async def _gauge_loop(self) -> None:
        """Refresh the pending gauge now and then; a failure only skips one refresh."""
        while not self._stopping.is_set():
            try:
                set_pending(await store.pending_by_reason(self.pool))
            except DB_UNAVAILABLE as e:
                log.debug("pending gauge not refreshed: %s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.gauge_interval_s)
