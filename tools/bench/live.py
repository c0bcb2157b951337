"""Live stream at scale, and alert latency (rows of ``make bench``).

Ingest throughput with and without the clients: one closed-loop run at full speed cut into
stretches of ``STRETCH_S``, the clients connected for every other one (without, with, without,
..., without); each stretch with clients is compared with the two without around it, and the
table gives the median of those changes over every run. Pairs seconds apart see the same
machine: what drifts over minutes on a shared machine weighs on both sides alike.

Fan-out: ``BENCH_LIVE_CLIENTS`` stream clients (default 500, spread over a few processes of
their own) each watch one factory, as a console board filtered to a factory does, while
background readings flow at half the closed loop's rate into other factories (the query API's
feed still receives every one of them). A probe posts a few readings a second into the watched
factory, stamped with the moment it sent them, for the whole run; every client times every probe
reading from that stamp to its arrival. Also the query API's peak resident memory meanwhile.

Alert latency: a rule on one probe machine; a reading past its threshold is posted, and the
clock stops when ``GET /api/v1/alerts`` lists the alert and when its ``opened`` event arrives on
the stream. A reading past the clear threshold ends the episode before the next one.

A client process is ``python -m tools.bench.live <job JSON>``: it opens its streams when a line
``open`` comes on its standard input and closes them on ``close``; when its standard input
closes, it prints what it measured as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

import httpx
import orjson
import uvloop

from shared.settings import PostgresSettings
from tools.bench import http_phase
from tools.bench.figures import Context, Figure
from tools.bench.httpload import IngestBodies, Job
from tools.bench.memory import rss_mb
from tools.bench.stack import CpuCensus, cpu_seconds, instances, parent_map, tree, url
from tools.bench.stored import writers_written
from tools.bench.table import Row, ms, num
from tools.common.auth import access_token, dev_password, login
from tools.common.stats import percentile
from tools.simulator.registry import ensure_machines

log = logging.getLogger("tools.bench")

# Stream clients and their processes (BENCH_LIVE_CLIENTS changes the count), probe readings/s.
CLIENTS = int(os.environ.get("BENCH_LIVE_CLIENTS", "500"))
CLIENT_PROCESSES = 2
# The clients stand in for browsers on the plant's screens, not on the server: their processes
# run at this niceness, so that on this one machine they take what the pipeline leaves rather
# than delaying it (what they use is still measured and printed).
CLIENT_NICE = 19
PROBE_RATE = 10.0
WATCHED_FACTORY, ALERT_FACTORY = "bench-watched", "bench-alerting"
LATENCY_TARGET_MS = 1000.0
THROUGHPUT_TOLERANCE = 0.10
ALERT_TARGET_MS = 2000.0
API_POLL_S = 0.02
# The probe's values stay far from every rule (the plant-wide temperature rule included).
PROBE_FIELDS = {"temperature": 21.5, "speed": 800.0}
ALERT_FIELD, ALERT_THRESHOLD, ALERT_CLEAR = "pressure", 500.0, 400.0
HOT, COOL = 600.0, 100.0
ALERT_TIMEOUT_S = 10.0
EPISODE_EVERY_S = 0.5


# ------------------------------------------------------------------ one stream, raw HTTP/1.1
async def open_stream(
    base: str, token: str, params: dict[str, str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``GET /api/v1/live`` on a connection of its own; returns once the 200 head is read."""
    parts = urlsplit(base)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    head = (
        f"GET /api/v1/live?{urlencode(params)} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        writer.close()
        raise OSError(f"live stream answered {status.decode(errors='replace').strip()}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return reader, writer


async def read_chunks(
    reader: asyncio.StreamReader, on_frame: Callable[[bytes, bytes], None]
) -> None:
    """Decode the chunked body; the server writes whole SSE frames per chunk, so each chunk is
    split on blank lines and every frame handed over as (event type, data line)."""
    while True:
        size_line = await reader.readline()
        if not size_line:
            return
        size = int(size_line.strip() or b"0", 16)
        if size == 0:
            return
        chunk = await reader.readexactly(size + 2)
        split_frames(chunk[:-2], on_frame)


# ------------------------------------------------------------------ client processes
@dataclass(slots=True)
class ClientJob:
    base: str
    token: str
    factory_id: str
    clients: int


@dataclass(slots=True)
class ClientOutcome:
    connected: int = 0
    # (arrival Unix time, latency ms) of every probe reading every client got
    samples: list[tuple[float, float]] = field(default_factory=list)
    gaps: int = 0
    errors: list[str] = field(default_factory=list)


def split_frames(chunk: bytes, on_frame: Callable[[bytes, bytes], None]) -> None:
    """Hand over every SSE frame of a chunk as (event type, data line)."""
    for block in chunk.split(b"\n\n"):
        if not block or block.startswith(b":"):
            continue
        kind, data = b"message", b""
        for line in block.split(b"\n"):
            if line.startswith(b"event: "):
                kind = line[7:]
            elif line.startswith(b"data: "):
                data = line[6:]
        on_frame(kind, data)


class StreamClient(asyncio.Protocol):
    """One stream client of the fleet, as a protocol: its chunks are split into frames where
    they arrive, with no task woken per chunk. Five hundred of them share two processes on the
    machine under test, so what a client costs is taken from the pipeline being measured; the
    arrival time is taken the same way (when the bytes are read)."""

    def __init__(self, on_frame: Callable[[bytes, bytes], None]) -> None:
        self.on_frame = on_frame
        self.status: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.ended: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._buf = b""
        self._in_body = False

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        if not self._in_body:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            self._in_body = True
            if not self.status.done():
                self.status.set_result(buf[: buf.find(b"\r\n")])
            buf = buf[end + 4 :]
        pos = 0
        while (eol := buf.find(b"\r\n", pos)) >= 0:
            size = int(buf[pos:eol].split(b";", 1)[0] or b"0", 16)
            start = eol + 2
            if size == 0:
                self._end(None)
                return
            if len(buf) < start + size + 2:
                break
            split_frames(buf[start : start + size], self.on_frame)
            pos = start + size + 2
        self._buf = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(f"stream ended: {exc}" if exc else "stream ended")
        if not self.status.done():
            self.status.set_result(b"")

    def _end(self, error: str | None) -> None:
        if not self.ended.done():
            self.ended.set_result(error)


# The probe readings' timestamps decoded so far, by the event's data line: every client of a
# process gets the same readings, and one decode each is enough.
_sent: dict[bytes, float] = {}


def sent_at(data: bytes) -> float:
    """The probe reading's timestamp (when it was sent), as a Unix time."""
    at = _sent.get(data)
    if at is None:
        if len(_sent) >= 10_000:
            _sent.clear()
        at = _sent[data] = datetime.fromisoformat(orjson.loads(data)["timestamp"]).timestamp()
    return at


async def _client(job: ClientJob, out: ClientOutcome) -> None:
    def on_frame(kind: bytes, data: bytes) -> None:
        if kind == b"reading":
            now = time.time()
            out.samples.append((now, (now - sent_at(data)) * 1000))
        elif kind == b"gap":
            out.gaps += 1

    parts = urlsplit(job.base)
    params = {"factory_id": job.factory_id, "types": "reading"}
    loop = asyncio.get_running_loop()
    try:
        transport, client = await loop.create_connection(
            lambda: StreamClient(on_frame), parts.hostname or "localhost", parts.port or 80
        )
    except OSError as e:
        out.errors.append(str(e))
        return
    try:
        transport.write(
            f"GET /api/v1/live?{urlencode(params)} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {job.token}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        status = await client.status
        if b" 200 " not in status:
            out.errors.append(f"live stream answered {status.decode(errors='replace').strip()}")
            return
        out.connected += 1
        error = await client.ended
        if error is not None:
            out.errors.append(error)
    finally:
        transport.close()


async def _listen(job: ClientJob) -> ClientOutcome:
    """Open the job's streams on ``open``, close them on ``close`` (lines on standard input),
    as often as told; once standard input closes, return what every stream measured."""
    out = ClientOutcome()
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    while True:
        command = (await loop.run_in_executor(None, sys.stdin.buffer.readline)).strip()
        if command == b"open" and not tasks:
            for _ in range(job.clients):
                tasks.append(asyncio.create_task(_client(job, out)))
                await asyncio.sleep(0.002)  # a ramp, not a thundering herd of handshakes
        elif command in (b"close", b""):
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            tasks = []
            if not command:
                return out


class ClientFleet:
    """``clients`` streams over ``processes`` processes (python -m tools.bench.live), opened
    and closed together as often as the run needs, the processes staying up meanwhile."""

    def __init__(self, job: ClientJob, processes: int) -> None:
        self.jobs = [
            ClientJob(
                job.base,
                job.token,
                job.factory_id,
                job.clients // processes + (1 if p < job.clients % processes else 0),
            )
            for p in range(processes)
        ]
        self.procs: list[asyncio.subprocess.Process] = []
        self._outcome: ClientOutcome | None = None

    async def start(self) -> None:
        for job in self.jobs:
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tools.bench.live",
                    orjson.dumps(asdict(job)).decode(),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            )

    async def _tell(self, command: bytes) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(command + b"\n")
            await proc.stdin.drain()

    async def open(self) -> None:
        await self._tell(b"open")

    async def close(self) -> None:
        await self._tell(b"close")

    async def stop(self) -> ClientOutcome:
        """Close every stream and end the processes (once); what every stream measured."""
        if self._outcome is not None:
            return self._outcome
        total = self._outcome = ClientOutcome()
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            stdout, _ = await proc.communicate()
            if proc.returncode != 0 or not stdout:
                total.errors.append(f"client process exited {proc.returncode}")
                continue
            got = orjson.loads(stdout)
            total.connected += got["connected"]
            total.samples += [tuple(s) for s in got["samples"]]
            total.gaps += got["gaps"]
            total.errors += got["errors"]
        return total


# ------------------------------------------------------------------ what the server says
async def live_clients(client: httpx.AsyncClient) -> int:
    """Stream clients connected to the query API (its ``millrace_live_clients`` gauge)."""
    resp = await client.get(f"{url('query_api')}/metrics")
    for line in resp.text.splitlines():
        if line.startswith("millrace_live_clients "):
            return int(float(line.split()[1]))
    return 0


def query_api_pids() -> set[int]:
    """The query API's processes (its uvicorn workers too): a walk over every process."""
    return tree({i.pid for i in instances() if i.service == "query_api"}, parent_map())


def query_api_rss(pids: set[int] | None = None) -> float:
    return max((rss_mb(p) for p in pids or query_api_pids()), default=0.0)


async def sample_rss(stop: asyncio.Event, peak: list[float]) -> None:
    # The processes are found once: walking every process twice a second cost the benchmark's
    # own process 0.014 cores, on the cores of the run with clients it is measuring.
    pids = await asyncio.to_thread(query_api_pids)
    while not stop.is_set():
        peak.append(await asyncio.to_thread(query_api_rss, pids))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


# ------------------------------------------------------------------ probes
async def post_reading(
    client: httpx.AsyncClient, token: str, factory: str, machine: str, fields: dict[str, float]
) -> float:
    """One reading stamped now; returns when it was sent (Unix time)."""
    now = time.time()
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds")
    body = {
        "gateway_id": "BENCH-LIVE",
        "factory_id": factory,
        "batch": [{"machine_id": machine, "readings": [{"timestamp": stamp, **fields}]}],
    }
    resp = await client.post(
        f"{url('ingest_gateway')}/api/v1/data/ingest",
        content=orjson.dumps(body),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    if resp.status_code != 202:
        raise OSError(f"probe reading answered {resp.status_code}: {resp.text[:200]}")
    return now


async def probe_readings(
    token: str, factory: str, machines: list[str], rate: float, stop: asyncio.Event
) -> int:
    """Probe readings at ``rate``/s, round robin over ``machines``, until ``stop``."""
    sent = 0
    async with httpx.AsyncClient(timeout=10) as client:
        start = time.monotonic()
        while not stop.is_set():
            await post_reading(client, token, factory, machines[sent % len(machines)], PROBE_FIELDS)
            sent += 1
            ahead = start + sent / rate - time.monotonic()
            if ahead > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), ahead)  # the probe's own pace
    return sent


@dataclass(slots=True)
class AlertTimes:
    api_ms: list[float] = field(default_factory=list)
    stream_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def manager_token() -> str:
    """The benchmark's alert rule is created and deleted again (deleting takes Management):
    the development manager (``make up`` creates it)."""
    password = dev_password("manager")
    if password is None:
        raise RuntimeError("no development users (.run/dev-users.txt): run `make up`")
    resp = login(url("auth"), "manager", password, timeout=30)
    resp.raise_for_status()
    return access_token(resp)


class AlertProbe:
    """A rule on ``machine`` and one stream watching its alerts; ``episode()`` times one."""

    def __init__(self, token: str, factory: str, machine: str) -> None:
        self.token, self.factory, self.machine = token, factory, machine
        self.rule_id = ""
        self.sup = ""
        self.events: asyncio.Queue[tuple[float, dict[str, object]]] = asyncio.Queue()
        self._stream: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> AlertProbe:
        self.sup = await asyncio.to_thread(manager_token)
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.post(
                f"{url('query_api')}/api/v1/alerts/rules",
                json={
                    "name": f"bench live {uuid.uuid4().hex[:6]}",
                    "field": ALERT_FIELD,
                    "comparison": ">",
                    "threshold": ALERT_THRESHOLD,
                    "clear_threshold": ALERT_CLEAR,
                    "severity": "minor",
                    "scope_type": "machine",
                    "scope_value": self.machine,
                },
                headers={"authorization": f"Bearer {self.sup}"},
            )
            if resp.status_code != 201:
                raise OSError(f"alert rule refused: {resp.status_code} {resp.text[:200]}")
            self.rule_id = resp.json()["rule"]["id"]
        params = {"machine_id": self.machine, "types": "alert"}
        reader, self._writer = await open_stream(url("query_api"), self.token, params)

        def on_frame(kind: bytes, data: bytes) -> None:
            if kind == b"alert":
                self.events.put_nowait((time.time(), orjson.loads(data)))

        self._stream = asyncio.create_task(read_chunks(reader, on_frame))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._stream is not None:
            self._stream.cancel()
        if self._writer is not None:
            self._writer.close()
        async with httpx.AsyncClient(timeout=10) as client:
            # Its last alert (if the run stopped mid-episode) is cleared by hand; the rule goes.
            for a in await self._alerts(client, "open"):
                await client.post(
                    f"{url('query_api')}/api/v1/alerts/{a['id']}/clear",
                    json={},
                    headers={"authorization": f"Bearer {self.sup}"},
                )
            resp = await client.delete(
                f"{url('query_api')}/api/v1/alerts/rules/{self.rule_id}",
                headers={"authorization": f"Bearer {self.sup}"},
            )
            if resp.status_code not in (200, 204):
                log.warning("benchmark alert rule %s left: %s", self.rule_id, resp.text[:200])

    async def _alerts(self, client: httpx.AsyncClient, state: str) -> list[dict[str, object]]:
        resp = await client.get(
            f"{url('query_api')}/api/v1/alerts",
            params={"machine_id": self.machine, "rule_id": self.rule_id, "state": state},
            headers={"authorization": f"Bearer {self.token}"},
        )
        resp.raise_for_status()
        return list(resp.json()["alerts"])

    async def _event(self, event: str, after: float, deadline: float) -> float | None:
        while (left := deadline - time.monotonic()) > 0:
            try:
                at, data = await asyncio.wait_for(self.events.get(), left)
            except TimeoutError:
                return None
            if data.get("event") == event and at >= after:
                return at
        return None

    async def _listed(self, client: httpx.AsyncClient, deadline: float) -> float | None:
        while time.monotonic() < deadline:
            if await self._alerts(client, "active"):
                return time.time()
            await asyncio.sleep(API_POLL_S)  # the API has no notification: poll as a page would
        return None

    async def episode(self, client: httpx.AsyncClient, out: AlertTimes, timeout_s: float) -> None:
        while not self.events.empty():
            self.events.get_nowait()
        deadline = time.monotonic() + timeout_s
        sent = await post_reading(
            client, self.token, self.factory, self.machine, {ALERT_FIELD: HOT}
        )
        on_stream, listed = await asyncio.gather(
            self._event("opened", sent, deadline), self._listed(client, deadline)
        )
        # Not seen within the timeout: counted at the timeout (and named), never left out.
        late = time.time()
        if on_stream is None or listed is None:
            out.failures.append("alert not seen in time")
        out.stream_ms.append(((on_stream or late) - sent) * 1000)
        out.api_ms.append(((listed or late) - sent) * 1000)
        cool = await post_reading(
            client, self.token, self.factory, self.machine, {ALERT_FIELD: COOL}
        )
        if await self._event("cleared", cool, time.monotonic() + timeout_s) is None:
            out.failures.append("alert not cleared in time")

    async def warm_up(self, client: httpx.AsyncClient, timeout_s: float = 30) -> None:
        """The alerter loads a new rule within its refresh period: until the first alert."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            scratch = AlertTimes()
            await self.episode(client, scratch, 3)
            if not scratch.failures:
                return
        raise OSError("the alerter never raised the benchmark rule's alert")


async def alert_episodes(probe: AlertProbe, stop: asyncio.Event) -> AlertTimes:
    """Episodes every ``EPISODE_EVERY_S`` until ``stop``."""
    out = AlertTimes()
    async with httpx.AsyncClient(timeout=10) as client:
        while not stop.is_set():
            began = time.monotonic()
            await probe.episode(client, out, ALERT_TIMEOUT_S)
            rest = EPISODE_EVERY_S - (time.monotonic() - began)
            if rest > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), rest)  # a pace, not a flood of alerts
    return out


# ------------------------------------------------------------------ the measured run
async def _wait_clients(http: httpx.AsyncClient, n: int, timeout_s: float) -> None:
    """Until the query API counts ``n`` stream clients connected."""
    deadline = time.monotonic() + timeout_s
    while (got := await live_clients(http)) != n:
        if time.monotonic() > deadline:
            raise OSError(f"{got} stream clients connected, not {n}, after {timeout_s:.0f} s")
        await asyncio.sleep(0.1)  # the gauge has no notification


# The pipeline (the query API aside) counts as settled below this many cores together.
SETTLED_CORES = 0.15


async def settled(timeout_s: float = 60.0) -> float:
    """Wait until the pipeline is idle again (RabbitMQ's quorum logs, InfluxDB compacting, the
    writers rolling up what the run before sent), so every closed-loop run starts from the same
    state; seconds waited."""
    started = time.monotonic()
    before = await asyncio.to_thread(CpuCensus.take)
    while time.monotonic() - started < timeout_s:
        await asyncio.sleep(1.0)  # CPU use is sampled: nothing to wait on
        now = await asyncio.to_thread(CpuCensus.take)
        # The query API serves the connected clients meanwhile: its share is theirs.
        busy = sum(c for owner, c in now.breakdown(before).items() if owner != "query_api")
        if busy < SETTLED_CORES:
            break
        before = now
    return time.monotonic() - started


# The throughput comparison is one closed-loop run at full speed, cut into stretches with and
# without the clients in turn. Each stretch in the middle of three is compared with the two
# around it, a few seconds apart: what drifts over minutes on a shared machine (InfluxDB
# compacting its growing shards, other tenants) weighs on both sides alike. Runs take turns
# at which side comes first, so that work of the pipeline's that recurs at the same moment of
# every run (a log rolled, a cache written out) does not fall on one side only. A stretch's
# first seconds (the clients connecting or leaving, the writers catching up) are not counted.
STRETCHES = 11
STRETCH_S = 12.0
UNCOUNTED_S = 3.0


@dataclass(slots=True)
class Toggled:
    """Readings/s stored in each stretch, in order, and the cores the query API, the pipeline
    and the client processes used in each; the clients are connected in the odd stretches, or
    in the even ones when ``with_first``."""

    with_first: bool = False
    rates: list[float] = field(default_factory=list)
    cores: list[dict[str, float]] = field(default_factory=list)

    def clients_in(self, i: int) -> bool:
        return (i % 2 == 0) == self.with_first

    @property
    def without(self) -> list[float]:
        return [r for i, r in enumerate(self.rates) if not self.clients_in(i)]

    @property
    def with_clients(self) -> list[float]:
        return [r for i, r in enumerate(self.rates) if self.clients_in(i)]

    def changes(self) -> list[float]:
        """The change the clients make, for every odd stretch against the two around it: the
        stretch with the clients over the mean of the two without, or the mean of the two with
        over the stretch without."""
        r = self.rates
        out = []
        for i in range(1, len(r) - 1, 2):
            around = (r[i - 1] + r[i + 1]) / 2
            out.append(r[i] / around - 1 if self.clients_in(i) else around / r[i] - 1)
        return out


def processes_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by ``pids`` (those gone count nothing)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


async def _until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))  # the run's own schedule


async def toggled(
    ctx: Context, fleet: ClientFleet, http: httpx.AsyncClient, idle: int, with_first: bool
) -> Toggled:
    """The closed loop, the clients opened for every other stretch (``idle``: stream clients
    connected to the query API that are not the benchmark's)."""
    a = ctx.args
    waited = await settled()
    log.info("live: pipeline settled after %.0f s", waited)
    bodies = IngestBodies(
        ctx.machines, ctx.factory("t"), time.time_ns() // 1000 - 60_000_000, a.readings_per_machine
    )
    start = time.time() + 0.5
    end = start + STRETCHES * STRETCH_S
    job = Job(
        target=http_phase.target("ingest_gateway", ctx.token),
        requests=1 << 40,  # stopped by the clock (``until``), not by a count
        connections=a.http_connections,
        start_at=start,
        bodies=bodies,
        until=end,
    )
    loading = asyncio.ensure_future(http_phase.spread(ctx.pool, job.split(a.http_processes)))
    client_pids = [p.pid for p in fleet.procs]
    out = Toggled(with_first)
    connected = False
    try:
        for i in range(STRETCHES):
            begins = start + i * STRETCH_S
            await _until(begins)
            if out.clients_in(i) != connected:
                connected = out.clients_in(i)
                await (fleet.open() if connected else fleet.close())
            await _until(begins + UNCOUNTED_S)
            await _wait_clients(http, idle + CLIENTS if connected else idle, STRETCH_S / 2)
            census, clients_s = await asyncio.to_thread(CpuCensus.take), processes_cpu(client_pids)
            n0, t0 = await writers_written(http), time.time()
            await _until(begins + STRETCH_S)
            n1, t1 = await writers_written(http), time.time()
            now, clients_now = await asyncio.to_thread(CpuCensus.take), processes_cpu(client_pids)
            out.rates.append((n1 - n0) / (t1 - t0))
            used = now.since(census)
            clients = (clients_now - clients_s) / max(now.at - census.at, 1e-9)
            by_owner = now.breakdown(census)
            out.cores.append(
                {
                    "pipeline": used["pipeline"],
                    "query_api": by_owner.get("query_api", 0.0),
                    "clients": clients,
                    "load": used["bench"] - clients,
                    "other": used["other"],
                }
            )
            log.info(
                "live: stretch %d (%s clients): %.0f readings/s; cores %s",
                i,
                "with" if connected else "without",
                out.rates[-1],
                ", ".join(f"{k} {c:.2f}" for k, c in by_owner.items() if c >= 0.01),
            )
    finally:
        if connected:
            await fleet.close()
        outcomes = await loading
    errors = [e for o in outcomes for e in o.errors]
    if errors:
        raise OSError(f"load generator failed: {errors[:3]}")
    statuses = http_phase.merge_statuses(outcomes)
    if set(statuses) != {202}:
        raise OSError(f"answers other than 202 in the closed loop: {statuses}")
    ctx.note_backlog(start, end)
    return out


async def measure(ctx: Context) -> dict[str, float]:
    """One run: the toggled closed loop, then half load with the clients connected (their
    latency, alert episodes, query_api's RSS); probe readings throughout."""
    # Readings carry their machine's registered factory: the watched machines have one of
    # their own (the load's machines do not), as has the alert probe.
    watched_machines = await ensure_machines(PostgresSettings(), WATCHED_FACTORY, 4, ctx.registered)
    alert_machines = await ensure_machines(PostgresSettings(), ALERT_FACTORY, 1, ctx.registered)
    for m, factory in [(m, WATCHED_FACTORY) for m in watched_machines] + [
        (alert_machines[0], ALERT_FACTORY)
    ]:
        if m.factory_id != factory:
            raise RuntimeError(f"machine {m.name} is registered in {m.factory_id}, not {factory}")
    probes = [m.id for m in watched_machines]
    # The probe posts for the whole round, the closed loop included: its HTTP client (0.04
    # cores of this process) then weighs on the stretches without clients as on those with.
    stop_probes = asyncio.Event()
    probing = asyncio.create_task(
        probe_readings(ctx.token, WATCHED_FACTORY, probes, PROBE_RATE, stop_probes)
    )
    fleet = ClientFleet(
        ClientJob(url("query_api"), ctx.token, WATCHED_FACTORY, CLIENTS), CLIENT_PROCESSES
    )
    await fleet.start()
    try:
        return await _round(ctx, fleet, alert_machines[0].id)
    finally:
        await fleet.stop()  # the round's own stop, or the processes ended after a failure
        stop_probes.set()
        await probing


async def _round(ctx: Context, fleet: ClientFleet, alert_machine: str) -> dict[str, float]:
    a = ctx.args
    per_request = len(ctx.machines) * a.readings_per_machine
    async with httpx.AsyncClient(timeout=5) as http:
        idle = await live_clients(http)
        # Runs take turns at which side of the closed loop comes first.
        loop = await toggled(ctx, fleet, http, idle, len(ctx.values.get("live.p99", [])) % 2 == 1)
        without = statistics.median(loop.without)
        half_load = a.fresh_load or without / 2
        rss_idle = await asyncio.to_thread(query_api_rss)
        stop_rss, rss = asyncio.Event(), [rss_idle]
        sampling = asyncio.create_task(sample_rss(stop_rss, rss))
        await settled()
        opened = time.time()
        await fleet.open()
        try:
            await _wait_clients(http, idle + CLIENTS, 60)
            async with AlertProbe(ctx.token, ALERT_FACTORY, alert_machine) as alert:
                await alert.warm_up(http)
                stop_alerts = asyncio.Event()
                alerting = asyncio.create_task(alert_episodes(alert, stop_alerts))
                bodies = IngestBodies(
                    ctx.machines,
                    ctx.factory("l"),
                    time.time_ns() // 1000 - 60_000_000,
                    a.readings_per_machine,
                )
                begun = time.time() + 2.0  # the load's start and warm-up excluded
                load = await http_phase.fixed_rate(
                    ctx.pool,
                    http_phase.target("ingest_gateway", ctx.token),
                    half_load / per_request,
                    a.fresh_seconds,
                    a.http_processes,
                    64,
                    bodies,
                )
                window = (begun, time.time())
                stop_alerts.set()
                alerts = await alerting
            connected_at_end = await live_clients(http)
        finally:
            await fleet.close()
            stop_rss.set()
            await sampling
    outcome = await fleet.stop()
    if outcome.errors:
        raise OSError(f"stream clients failed: {outcome.errors[:3]}")
    if connected_at_end < idle + CLIENTS:
        raise OSError(f"only {connected_at_end - idle} stream clients still connected")
    if set(load.statuses) != {202}:
        raise OSError(f"answers other than 202 under the half load: {load.statuses}")
    if len(alerts.stream_ms) < 3:
        raise OSError(f"only {len(alerts.stream_ms)} alert episodes timed")
    # The probe readings sent within the window (arrival less latency): a stream writes what
    # came within its flush period at once, so counting arrivals would let the window's edge cut
    # a chunk in two; every reading sent in the window still arrives, as the clients stay on.
    latencies = [
        lat
        for at, lat in outcome.samples
        if at >= opened and window[0] <= at - lat / 1000 <= window[1]
    ]
    expected = CLIENTS * PROBE_RATE * (window[1] - window[0])
    changes = loop.changes()
    log.info(
        "live: closed loop stretches (readings/s, %s first): %s; change with "
        "clients per pair: %s; cores per stretch (query_api/clients/pipeline/load/other): %s",
        "with clients" if loop.with_first else "without clients",
        ", ".join(f"{r:,.0f}" for r in loop.rates),
        ", ".join(f"{c:+.1%}" for c in changes),
        ", ".join(
            f"{c['query_api']:.2f}/{c['clients']:.2f}/{c['pipeline']:.2f}/{c['load']:.2f}/"
            f"{c['other']:.2f}"
            for c in loop.cores
        ),
    )
    log.info(
        "live: %d clients, reading→client p50 %.0f ms p99 %.0f ms at %.0f readings/s "
        "(%.1f %% of the probe readings delivered); query_api RSS %.0f MB (%.0f idle); "
        "alert p99 API %.0f ms, stream %.0f ms (%d episodes, %d missed)",
        CLIENTS,
        percentile(latencies, 50),
        percentile(latencies, 99),
        load.achieved_rps * per_request,
        100 * len(latencies) / expected if expected else 0.0,
        max(rss),
        rss_idle,
        percentile(alerts.api_ms, 99),
        percentile(alerts.stream_ms, 99),
        len(alerts.stream_ms),
        len(alerts.failures),
    )
    with_cores = [c for i, c in enumerate(loop.cores) if loop.clients_in(i)]
    without_cores = [c for i, c in enumerate(loop.cores) if not loop.clients_in(i)]
    return {
        "live.p50": percentile(latencies, 50),
        "live.p99": percentile(latencies, 99),
        "live.delivered": len(latencies) / expected if expected else 0.0,
        "live.gaps": float(outcome.gaps),
        "live.load": load.achieved_rps * per_request,
        "live.rss": max(rss),
        "live.rss.idle": rss_idle,
        "live.tput.with": statistics.median(loop.with_clients),
        "live.tput.without": without,
        # Paired within the run, stretch by stretch (the table pools every run's pairs).
        "live.tput.change": statistics.median(changes),
        **{f"live.tput.pair{i}": c for i, c in enumerate(changes)},
        "live.cores.query_api.with": statistics.median(c["query_api"] for c in with_cores),
        "live.cores.query_api.without": statistics.median(c["query_api"] for c in without_cores),
        "live.cores.clients": statistics.median(c["clients"] for c in with_cores),
        "live.alert.api.p50": percentile(alerts.api_ms, 50),
        "live.alert.api.p99": percentile(alerts.api_ms, 99),
        "live.alert.stream.p50": percentile(alerts.stream_ms, 50),
        "live.alert.stream.p99": percentile(alerts.stream_ms, 99),
        "live.alert.episodes": float(len(alerts.stream_ms)),
        "live.alert.missed": float(len(alerts.failures)),
    }


def rows(ctx: Context, v: dict[str, float]) -> list[Row]:
    """The table's rows for what ``measure`` returned (medians over runs)."""
    if "live.p99" not in v:
        return []
    # Every pair of every run, pooled: the median of their changes is the figure.
    pairs = [c for k, cs in ctx.values.items() if k.startswith("live.tput.pair") for c in cs]
    change = statistics.median(pairs) if pairs else v["live.tput.change"]
    worst_alert = max(v["live.alert.api.p99"], v["live.alert.stream.p99"])
    return [
        Row(
            f"live reading→client p50 / p99, {CLIENTS} clients at half load "
            f"({num(v['live.load'])} readings/s)",
            f"{ms(v['live.p50'])} / {ms(v['live.p99'])} ms",
            f"{PROBE_RATE:.0f} probe readings/s to every client; "
            f"{min(1.0, v['live.delivered']):.0%} delivered, {v['live.gaps']:.0f} gaps",
            "-",
            f"p99 ≤ {LATENCY_TARGET_MS:.0f} ms",
            "yes" if v["live.p99"] <= LATENCY_TARGET_MS else "NO",
        ),
        Row(
            f"HTTP readings/s stored with {CLIENTS} stream clients connected",
            num(v["live.tput.with"]),
            f"same closed loop without them: {num(v['live.tput.without'])}; change: median of "
            f"{len(pairs)} pairs, each a stretch against the two of the other side around it "
            f"({min(pairs, default=change):+.0%} to {max(pairs, default=change):+.0%}); "
            f"query_api {v['live.cores.query_api.with']:.2f} cores with, "
            f"{v['live.cores.query_api.without']:.2f} without; client processes "
            f"{v['live.cores.clients']:.2f}",
            f"{change:+.0%}",
            f"within {THROUGHPUT_TOLERANCE:.0%}",
            "yes" if change >= -THROUGHPUT_TOLERANCE else "NO",
        ),
        Row(
            f"peak RSS query_api with {CLIENTS} stream clients",
            f"{v['live.rss']:.0f} MB",
            f"before they connected: {v['live.rss.idle']:.0f} MB",
            "-",
            "-",
            "-",
        ),
        Row(
            "alert p50 / p99, reading posted → listed by the API · on the stream",
            f"{ms(v['live.alert.api.p50'])} / {ms(v['live.alert.api.p99'])} · "
            f"{ms(v['live.alert.stream.p50'])} / {ms(v['live.alert.stream.p99'])} ms",
            f"{v['live.alert.episodes']:.0f} episodes a run at half load, "
            f"{v['live.alert.missed']:.0f} missed (counted at {ALERT_TIMEOUT_S:.0f} s)",
            "-",
            f"p99 ≤ {ALERT_TARGET_MS:.0f} ms",
            "yes" if worst_alert <= ALERT_TARGET_MS else "NO",
        ),
    ]


FIGURES = [Figure("live", measure, rows)]


def client_main(argv: list[str]) -> None:
    job = ClientJob(**orjson.loads(argv[0]))
    os.nice(CLIENT_NICE)
    # uvloop (the services' loop too): a load generator sharing the cores under test should
    # cost as little as it can.
    out = uvloop.run(_listen(job))
    sys.stdout.buffer.write(orjson.dumps(asdict(out)))


if __name__ == "__main__":
    client_main(sys.argv[1:])
