"""An HTTP/1.1 load generator small enough to leave the CPU to the pipeline.

Keep-alive connections on asyncio streams (uvloop), requests assembled from byte templates, two
modes:

* closed loop — every connection sends its next request as soon as the previous answer came
  (maximum throughput);
* open loop — requests are due at a fixed rate whatever the server does, and latency is measured
  from the moment a request was *due*, so a stalled server cannot hide its queueing delay
  (no coordinated omission).

Each load process runs :func:`run` (picklable arguments, spawned by the benchmark).
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import orjson

INGEST_PATH = "/api/v1/data/ingest"


@dataclass(slots=True)
class Target:
    host: str
    port: int
    token: str


@dataclass(slots=True)
class IngestBodies:
    """Gateway batches of ``len(machines) * readings_per_machine`` readings.

    Request ``g`` (a number unique across processes) carries timestamps
    ``base_us + g * readings_per_machine + j``: every reading of every machine is distinct, so
    InfluxDB must store all of them (a repeat would overwrite, and the count would tell).
    """

    machines: list[str]
    factory_id: str
    base_us: int
    readings_per_machine: int = 2
    gateway_id: str = "BENCH-GW"

    def build(self) -> _BodyFactory:
        return _BodyFactory(self)


class _BodyFactory:
    def __init__(self, spec: IngestBodies) -> None:
        self.spec = spec
        self.head = orjson.dumps({"gateway_id": spec.gateway_id, "factory_id": spec.factory_id})[
            :-1
        ] + (b',"batch":[')
        self.items = [b'{"machine_id":"' + m.encode() + b'","readings":[' for m in spec.machines]
        # A handful of plausible value sets, rotated (values do not matter to the pipeline).
        self.values = [
            b',"temperature":%.2f,"pressure":%.2f,"speed":%.1f}'
            % (55 + i * 0.37, 101 + i * 0.11, 1400 + i * 3.5)
            for i in range(16)
        ]
        self._seconds: dict[int, bytes] = {}

    def _iso(self, ts_us: int) -> bytes:
        sec, us = divmod(ts_us, 1_000_000)
        prefix = self._seconds.get(sec)
        if prefix is None:
            prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S").encode()
            self._seconds[sec] = prefix
        return b'{"timestamp":"' + prefix + b".%06dZ" % us + b'"'

    def body(self, g: int) -> bytes:
        n = self.spec.readings_per_machine
        first = self.spec.base_us + g * n
        stamps = [self._iso(first + j) for j in range(n)]
        values = self.values
        parts = []
        for i, item in enumerate(self.items):
            readings = b",".join(stamps[j] + values[(g + i + j) & 15] for j in range(n))
            parts.append(item + readings + b"]}")
        return self.head + b",".join(parts) + b"]}"


def post(target: Target, path: str, body: bytes) -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % (path.encode(), target.host.encode(), target.port, target.token.encode(), len(body))
    ) + body


def get(target: Target, path: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n\r\n" % (
        path.encode(),
        target.host.encode(),
        target.port,
        target.token.encode(),
    )


@dataclass(slots=True)
class Job:
    """What one load process does."""

    target: Target
    requests: int  # requests this process sends
    connections: int
    start_at: float  # wall clock (time.time()) at which every process starts
    stride: int = 1  # processes in the run: request numbers are offset + k * stride
    offset: int = 0
    rate: float | None = None  # requests/s of this process; None = closed loop
    bodies: IngestBodies | None = None  # None: GET ``path`` instead
    path: str = INGEST_PATH
    retry_503: bool = True
    until: float | None = None  # closed loop: no request sent after this wall-clock time

    def split(self, processes: int) -> list[Job]:
        """This job, the whole run in one process, shared between ``processes`` load processes:
        process p sends request numbers p, p + processes, ... and its share of ``requests`` (the
        first ones one more where they do not divide) and of ``rate``."""
        return [
            replace(
                self,
                requests=self.requests // processes + (1 if p < self.requests % processes else 0),
                stride=processes,
                offset=p,
                rate=None if self.rate is None else self.rate / processes,
            )
            for p in range(processes)
        ]


@dataclass(slots=True)
class Outcome:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    started: float = 0.0  # wall clock
    finished: float = 0.0
    retried: int = 0
    errors: list[str] = field(default_factory=list)


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def roundtrip(self, request: bytes) -> tuple[int, bytes, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        i = lower.find(b"content-length:")
        length = int(head[i + 15 : head.index(b"\r\n", i)]) if i >= 0 else 0
        body = await self.reader.readexactly(length) if length else b""
        return status, head, body


async def _connect(target: Target) -> _Conn:
    reader, writer = await asyncio.open_connection(target.host, target.port, limit=1 << 20)
    return _Conn(reader, writer)


def _retry_after(head: bytes) -> float:
    i = head.lower().find(b"retry-after:")
    if i < 0:
        return 1.0
    return float(head[i + 12 : head.index(b"\r\n", i)])


async def _send(conn: _Conn, job: Job, factory: _BodyFactory | None, g: int, out: Outcome) -> int:
    request = (
        post(job.target, job.path, factory.body(g))
        if factory is not None
        else get(job.target, job.path)
    )
    while True:
        status, head, _ = await conn.roundtrip(request)
        if status == 503 and job.retry_503:
            # Nothing was accepted: send it again after the pause the gateway was told.
            out.retried += 1
            await asyncio.sleep(_retry_after(head))
            continue
        return status


async def _closed(job: Job, factory: _BodyFactory | None, out: Outcome) -> None:
    counter = iter(range(job.requests))
    until = job.until

    async def worker() -> None:
        conn = await _connect(job.target)
        try:
            for k in counter:
                if until is not None and time.time() >= until:
                    break
                started = time.perf_counter()
                status = await _send(conn, job, factory, job.offset + k * job.stride, out)
                out.latencies_ms.append((time.perf_counter() - started) * 1000)
                out.statuses[status] = out.statuses.get(status, 0) + 1
                out.sent += 1
        finally:
            conn.writer.close()

    await asyncio.gather(*(worker() for _ in range(job.connections)))


async def _open(job: Job, factory: _BodyFactory | None, out: Outcome) -> None:
    assert job.rate is not None
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    for conn in await asyncio.gather(*(_connect(job.target) for _ in range(job.connections))):
        idle.put_nowait(conn)
    interval = 1.0 / job.rate
    t0 = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()

    async def one(k: int, due: float) -> None:
        conn = await idle.get()  # waiting for a free connection counts as latency
        try:
            status = await _send(conn, job, factory, job.offset + k * job.stride, out)
        finally:
            idle.put_nowait(conn)
        out.latencies_ms.append((time.perf_counter() - due) * 1000)
        out.statuses[status] = out.statuses.get(status, 0) + 1
        out.sent += 1

    for k in range(job.requests):
        due = t0 + k * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # the schedule: requests are due at a fixed rate
        task = asyncio.create_task(one(k, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    while not idle.empty():
        idle.get_nowait().writer.close()


async def _main(job: Job) -> Outcome:
    factory = job.bodies.build() if job.bodies is not None else None
    out = Outcome()
    delay = job.start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)  # every load process starts at the same moment
    out.started = time.time()
    try:
        if job.rate is None:
            await _closed(job, factory, out)
        else:
            await _open(job, factory, out)
    except (OSError, asyncio.IncompleteReadError, ValueError) as e:
        out.errors.append(f"{type(e).__name__}: {e}")
    out.finished = time.time()
    return out


def run(job: Job) -> Outcome:
    """Entry point of a load process."""
    # The generator's own pauses would show up as server latency: no cyclic GC while loading.
    gc.disable()
    try:
        import uvloop

        return uvloop.run(_main(job))
    except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
        return asyncio.run(_main(job))
