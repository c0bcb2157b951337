"""HTTP ingest: readings/s stored end to end at full speed, and latency at a fixed rate."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from tools.bench import httpload
from tools.bench.httpload import IngestBodies, Job, Outcome, Target
from tools.bench.stack import url
from tools.bench.stored import wait_stored, writers_written
from tools.common.stats import percentile


def target(service: str, token: str) -> Target:
    parts = urlsplit(url(service))
    return Target(parts.hostname or "127.0.0.1", parts.port or 80, token)


async def spread(executor: Executor, jobs: list[Job]) -> list[Outcome]:
    loop = asyncio.get_running_loop()
    return list(
        await asyncio.gather(*(loop.run_in_executor(executor, httpload.run, j) for j in jobs))
    )


def merge_statuses(outcomes: list[Outcome]) -> dict[int, int]:
    out: dict[int, int] = {}
    for o in outcomes:
        for status, n in o.statuses.items():
            out[status] = out.get(status, 0) + n
    return out


@dataclass(slots=True)
class Throughput:
    readings: int
    stored: int
    seconds: float  # first request sent → last reading stored
    door_seconds: float  # first request sent → last 202 received
    statuses: dict[int, int]
    retried: int
    started: float
    finished: float

    @property
    def stored_per_s(self) -> float:
        return self.stored / self.seconds if self.seconds > 0 else 0.0

    @property
    def accepted_per_s(self) -> float:
        return self.readings / self.door_seconds if self.door_seconds > 0 else 0.0


async def throughput(
    executor: Executor,
    token: str,
    machines: list[str],
    factory_id: str,
    requests: int,
    processes: int,
    connections: int,
    readings_per_machine: int = 2,
    timeout_s: float = 300,
) -> Throughput:
    """Closed loop: ``requests`` batches as fast as the gateway answers, until InfluxDB has them."""
    base_us = time.time_ns() // 1000 - 60_000_000
    bodies = IngestBodies(machines, factory_id, base_us, readings_per_machine)
    async with httpx.AsyncClient(timeout=5) as client:
        baseline = await writers_written(client)
    whole = Job(
        target=target("ingest_gateway", token),
        requests=requests,
        connections=connections,
        start_at=time.time() + 0.5,
        bodies=bodies,
    )
    loading = asyncio.ensure_future(spread(executor, whole.split(processes)))
    readings = requests * len(machines) * readings_per_machine
    stored_task = asyncio.ensure_future(
        wait_stored(readings, baseline, machines, base_us * 1000 - 1, timeout_s)
    )
    outcomes = await loading
    done_at, stored = await stored_task
    errors = [e for o in outcomes for e in o.errors]
    if errors:
        raise OSError(f"load generator failed: {errors[:3]}")
    started = min(o.started for o in outcomes)
    finished = max(o.finished for o in outcomes)
    statuses = merge_statuses(outcomes)
    accepted = statuses.get(202, 0) * len(machines) * readings_per_machine
    return Throughput(
        readings=accepted,
        stored=stored,
        seconds=done_at - started,
        door_seconds=finished - started,
        statuses=statuses,
        retried=sum(o.retried for o in outcomes),
        started=started,
        finished=done_at,
    )


@dataclass(slots=True)
class Latency:
    p50_ms: float
    p99_ms: float
    achieved_rps: float
    statuses: dict[int, int]
    samples: int


async def fixed_rate(
    executor: Executor,
    job_target: Target,
    rate: float,
    seconds: float,
    processes: int,
    connections: int,
    bodies: IngestBodies | None,
    path: str = httpload.INGEST_PATH,
    warmup_s: float = 1.0,
) -> Latency:
    """Open loop at ``rate`` requests/s for ``seconds``; the first ``warmup_s`` is not counted."""
    per_process = rate / processes
    whole = Job(
        target=job_target,
        requests=int(per_process * seconds) * processes,
        connections=connections,
        start_at=time.time() + 0.5,
        rate=rate,
        bodies=bodies,
        path=path,
        retry_503=False,
    )
    outcomes = await spread(executor, whole.split(processes))
    errors = [e for o in outcomes for e in o.errors]
    if errors:
        raise OSError(f"load generator failed: {errors[:3]}")
    skip = int(per_process * warmup_s)
    latencies = [ms for o in outcomes for ms in o.latencies_ms[skip:]]
    elapsed = max(o.finished for o in outcomes) - min(o.started for o in outcomes)
    return Latency(
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        achieved_rps=sum(o.sent for o in outcomes) / elapsed if elapsed > 0 else 0.0,
        statuses=merge_statuses(outcomes),
        samples=len(latencies),
    )
