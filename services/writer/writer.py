"""The writer: consume ``telemetry.writer``, batch by count and time, one InfluxDB write per
batch, acknowledge only after every reading of a message is stored (or dead-lettered alone).

InfluxDB down, slow or answering 5xx: the batch is retried with exponential backoff and nothing
is acked; the prefetch window stops further deliveries, so a long outage neither spins nor loses
data. SIGTERM: stop consuming, flush what is held, ack, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from prometheus_client import Counter, Gauge, Histogram
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
)

from services.writer.batch import LineBuilder, Outcome, Owners, write_isolating
from services.writer.conflicts import ConflictDetector
from services.writer.rollup import Rollup
from services.writer.settings import Settings
from services.writer.status import StatusUpdater
from shared import broker
from shared.envelope import Envelope, dead_letter
from shared.errors import BrokerUnavailable, InfluxUnavailable, MillraceError
from shared.influx import InfluxClient
from shared.log import request_id

log = logging.getLogger(__name__)

WRITTEN = Counter("millrace_writer_readings_written_total", "Readings stored in InfluxDB")
BATCHES = Counter("millrace_writer_batches_total", "InfluxDB writes of whole batches")
DEAD = Counter("millrace_writer_dead_lettered_total", "Readings dead-lettered", ["reason"])
RETRIES = Counter("millrace_writer_influx_retries_total", "InfluxDB write attempts that failed")
PENDING = Gauge("millrace_writer_pending_readings", "Readings held, not yet written")
WRITE_SECONDS = Histogram(
    "millrace_writer_write_seconds",
    "Duration of one batch write",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class ShuttingDown(MillraceError):
    """The flush could not finish before the shutdown deadline; leave messages unacked."""


@dataclass(slots=True)
class Held:
    message: AbstractIncomingMessage
    envelope: Envelope
    lines: list[str]
    # Readings that could not even be turned into a line: dead-lettered on flush.
    malformed: list[tuple[int, str]]


class Writer:
    def __init__(
        self,
        settings: Settings,
        connection: AbstractRobustConnection,
        influx: InfluxClient,
        *,
        rollup: Rollup | None = None,
        status: StatusUpdater | None = None,
    ) -> None:
        self.settings = settings
        self.conflicts = ConflictDetector(settings.writer.conflict_window)
        self.lines = LineBuilder()
        self.rollup = rollup
        self.status = status
        self.connection = connection
        self.influx = influx
        self.publisher = broker.Publisher(settings.amqp, connection)
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._held: list[Held] = []
        self._held_points = 0
        self._first_at: float | None = None
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._stopping = False
        self._deadline: float | None = None
        self.influx_ok = True
        self.written_total = 0

    async def start(self) -> None:
        await self.publisher.start()
        self._channel = await self.connection.channel()
        await self._channel.set_qos(prefetch_count=self.settings.writer.prefetch)
        _, self._queue, _ = await broker.declare_topology(self._channel, self.settings.amqp)
        self._flusher = asyncio.create_task(self._flush_loop(), name="writer-flush")
        if self.rollup is not None:
            self.rollup.start()
        self._consumer_tag = await self._queue.consume(self._on_message, no_ack=False)
        log.info(
            "consuming %s (batch %d points / %d ms, prefetch %d)",
            self.settings.amqp.queue,
            self.settings.writer.batch_points,
            self.settings.writer.batch_ms,
            self.settings.writer.prefetch,
        )

    @property
    def consuming(self) -> bool:
        return broker.consuming(self._channel, self._consumer_tag)

    async def stop(self) -> None:
        """Stop consuming, flush what is held within the shutdown timeout, then close."""
        self._stopping = True
        self._deadline = time.monotonic() + self.settings.shutdown_timeout_s
        await broker.cancel_consumer(self._queue, self._consumer_tag)
        self._wake.set()
        if self._flusher is not None:
            await self._flusher
        if self.rollup is not None:
            await self.rollup.stop()
        held = len(self._held)
        if self._channel is not None and not self._channel.is_closed:
            # Anything still held goes back to the queue when the channel closes.
            await self._channel.close()
        await self.publisher.close()
        log.info(
            "writer stopped: %d readings written in total, %d messages left unacked",
            self.written_total,
            held,
        )

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = Envelope.decode(message.body, message.routing_key or "")
        except ValueError as e:
            await self._dead_letter_message(message, "bad_envelope", str(e))
            return
        malformed: list[tuple[int, str]] = []
        lines = envelope.lines
        if lines is None:  # a message without the door's lines: build them here
            lines = []
            build = self.lines.line
            for i, reading in enumerate(envelope.readings):
                try:
                    lines.append(build(reading))
                except (KeyError, TypeError, ValueError) as e:
                    malformed.append((i, f"{type(e).__name__}: {e}"))
                    lines.append("")
        self._held.append(Held(message, envelope, lines, malformed))
        self._held_points += len(lines)
        PENDING.set(self._held_points)
        if self._first_at is None:
            # Wake the flusher so it starts this batch's time limit.
            self._first_at = time.monotonic()
            self._wake.set()
        elif self._held_points >= self.settings.writer.batch_points:
            self._wake.set()

    async def _flush_loop(self) -> None:
        batch_s = self.settings.writer.batch_ms / 1000
        while True:
            if self._first_at is None:
                timeout = None
            else:
                timeout = max(0.0, self._first_at + batch_s - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if self._held and (
                self._stopping
                or self._held_points >= self.settings.writer.batch_points
                or (self._first_at is not None and time.monotonic() - self._first_at >= batch_s)
            ):
                try:
                    await self._flush()
                except ShuttingDown:
                    log.warning("shutdown deadline reached with InfluxDB unavailable")
                    return
            if self._stopping and not self._held:
                return

    async def _flush(self) -> None:
        held, self._held = self._held, []
        self._held_points = 0
        self._first_at = None
        lines: list[str] = []
        owners = Owners()
        for m, h in enumerate(held):
            if h.malformed:
                bad = {i for i, _ in h.malformed}
                kept = [i for i in range(len(h.lines)) if i not in bad]
                owners.add(m, len(lines), kept)
                lines.extend(h.lines[i] for i in kept)
            else:
                owners.add(m, len(lines), None)
                lines.extend(h.lines)
        started = time.perf_counter()
        try:
            outcome = await self._write_with_retry(lines, owners)
        except ShuttingDown:
            self._held = held + self._held  # keep them: unacked → redelivered after close
            raise
        WRITE_SECONDS.observe(time.perf_counter() - started)
        # Every httpx request leaves a reference cycle (request, response, streams) holding the
        # body — here a whole batch of line protocol. Free it now, not when the young generation
        # next fills up (with tune_gc's threshold that left hundreds of MB of old bodies).
        gc.collect(1)
        BATCHES.inc()
        WRITTEN.inc(outcome.written)
        self.written_total += outcome.written

        rejected: dict[int, list[tuple[int, str]]] = {}
        for r in outcome.rejected:
            rejected.setdefault(r.owner[0], []).append((r.owner[1], r.error))
        for m, h in enumerate(held):
            problems = [(i, "malformed", err) for i, err in h.malformed] + [
                (i, "influx_rejected", err) for i, err in rejected.get(m, [])
            ]
            if problems:
                try:
                    await self._dead_letter_readings(h, problems)
                except BrokerUnavailable as e:
                    # Not acked: the whole message comes back and is written again (idempotent).
                    log.warning("could not dead-letter, leaving message unacked: %s", e)
                    continue
            await self._ack(h.message)
        PENDING.set(self._held_points)
        await self._after_write(held, {r.owner for r in outcome.rejected})
        if outcome.rejected:
            log.warning(
                "batch of %d: %d written, %d rejected by InfluxDB and dead-lettered (%d writes)",
                len(lines),
                outcome.written,
                len(outcome.rejected),
                outcome.writes,
            )

    async def _after_write(self, held: list[Held], refused: set[tuple[int, int]]) -> None:
        """Conflicts, rollup windows and live status from the readings just stored (list
        extends per message; no Python per reading unless one was malformed or refused)."""
        stored: list[dict[str, Any]] = []
        lines: list[str] = []
        for m, h in enumerate(held):
            if h.malformed or refused:
                bad = {i for i, _ in h.malformed}
                kept = [i for i in range(len(h.lines)) if i not in bad and (m, i) not in refused]
                stored.extend(h.envelope.readings[i] for i in kept)
                lines.extend(h.lines[i] for i in kept)
            else:
                stored.extend(h.envelope.readings)
                lines.extend(h.lines)
        try:
            self.conflicts.observe(stored, lines)
            if self.rollup is not None:
                self.rollup.touched(stored)
        except (KeyError, TypeError, ValueError) as e:
            # Only a message whose lines came without well-formed readings gets here: its
            # points are stored and acked; what is derived from them is skipped, loudly.
            log.error("stored batch without well-formed readings: %s: %s", type(e).__name__, e)
            return
        if self.status is not None:
            await self.status.update(stored)

    async def _write_with_retry(self, lines: list[str], owners: Owners) -> Outcome:
        def give_up_on_shutdown(state: RetryCallState) -> bool:
            return self._deadline is not None and time.monotonic() > self._deadline

        def log_retry(state: RetryCallState) -> None:
            RETRIES.inc()
            self.influx_ok = False
            exc = state.outcome.exception() if state.outcome else None
            level = (
                logging.ERROR
                if state.attempt_number >= self.settings.writer.retry_error_after
                else logging.WARNING
            )
            log.log(
                level,
                "InfluxDB write failed (attempt %d, %s); retrying in %.1f s, nothing acked",
                state.attempt_number,
                exc,
                state.next_action.sleep if state.next_action else 0.0,
                extra={"dependency": "influxdb", "attempt": state.attempt_number},
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(InfluxUnavailable),
            wait=wait_exponential(multiplier=0.2, max=self.settings.writer.retry_max_s),
            stop=give_up_on_shutdown,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    outcome = await write_isolating(lines, owners, self.influx.write)
            if not self.influx_ok:
                log.info("InfluxDB writes succeed again", extra={"dependency": "influxdb"})
            self.influx_ok = True
            return outcome
        except InfluxUnavailable as e:
            raise ShuttingDown(str(e)) from e

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except broker.PUBLISH_ERRORS as e:
            # The channel died after the write: the message is redelivered and rewritten,
            # which stores identical points (same series and timestamp) — no duplicate.
            log.warning("ack failed (%s); message will be redelivered", e)

    async def _dead_letter_readings(self, h: Held, problems: list[tuple[int, str, str]]) -> None:
        token = request_id.set(h.envelope.request_id or None)
        try:
            letters = []
            for i, reason, error in problems:
                gateway_id, origin_request = h.envelope.origin(i)
                letters.append(
                    dead_letter(
                        source="writer",
                        reason=reason,
                        error=error,
                        readings=[h.envelope.readings[i]],
                        gateway_id=gateway_id,
                        request_id=origin_request,
                        extra={
                            "origin_source": h.envelope.source,
                            "message_id": h.envelope.message_id,
                        },
                    )
                )
            await self.publisher.dead_letter(letters)
            for _, reason, error in problems:
                DEAD.labels(reason).inc()
                log.warning("reading dead-lettered (%s): %s", reason, error)
        finally:
            request_id.reset(token)

    async def _dead_letter_message(
        self, message: AbstractIncomingMessage, reason: str, error: str
    ) -> None:
        try:
            await self.publisher.dead_letter(
                [dead_letter(source="writer", reason=reason, error=error, raw=message.body)]
            )
        except BrokerUnavailable as e:
            log.warning("could not dead-letter undecodable message: %s", e)
            return
        DEAD.labels(reason).inc()
        log.warning("message dead-lettered (%s): %s", reason, error)
        await self._ack(message)
