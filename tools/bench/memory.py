"""Resident memory of every service process, sampled through the whole benchmark, beside the
depth of the writer queue (the backlog)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika

from shared.settings import AmqpSettings
from tools.bench.stack import instances, parent_map, tree


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass(slots=True)
class Sample:
    at: float
    queue: int  # messages in the writer queue
    rss: dict[str, float]  # service → largest process RSS (MB) among its instances/workers


@dataclass(slots=True)
class MemoryWatch:
    every_s: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    processes: dict[str, int] = field(default_factory=dict)  # service → processes seen
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        amqp = AmqpSettings()
        connection = await aio_pika.connect_robust(amqp.url.get_secret_value())
        try:
            channel = await connection.channel()
            while True:
                depth = 0
                with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError):
                    if channel.is_closed:
                        channel = await connection.channel()
                    queue = await channel.declare_queue(amqp.queue, passive=True)
                    depth = queue.declaration_result.message_count or 0
                self.samples.append(Sample(time.time(), depth, self._rss()))
                await asyncio.sleep(self.every_s)
        finally:
            await connection.close()

    def _rss(self) -> dict[str, float]:
        out: dict[str, float] = {}
        counts: dict[str, int] = {}
        parents = parent_map()
        for inst in instances():
            for pid in tree({inst.pid}, parents):
                out[inst.service] = max(out.get(inst.service, 0.0), rss_mb(pid))
                counts[inst.service] = counts.get(inst.service, 0) + 1
        for service, n in counts.items():
            self.processes[service] = max(self.processes.get(service, 0), n)
        return out

    def peak(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.samples:
            for service, mb in s.rss.items():
                out[service] = max(out.get(service, 0.0), mb)
        return out

    def backlog(self, since: float, until: float) -> tuple[int, dict[str, float]]:
        """Largest writer-queue depth between two times, and each service's RSS growth from
        when the backlog started building to when it peaked."""
        window = [s for s in self.samples if since <= s.at <= until]
        if not window:
            return 0, {}
        top = max(window, key=lambda s: s.queue)
        first = next((s for s in window if s.queue > 0), window[0])
        growth = {
            svc: top.rss.get(svc, 0.0) - first.rss.get(svc, 0.0)
            for svc in set(top.rss) | set(first.rss)
        }
        return top.queue, growth
