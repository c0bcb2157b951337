"""MQTT backlog drain: N single-reading QoS 1 messages wait in an edge queue, then 1 and 2 bridge
processes drain it; messages/s, the ratio 2:1, and each bridge's CPU µs per message.

The backlog is built with no bridge consuming (a private edge queue bound to a private topic
prefix, so the pipeline's own bridge never sees it), every message PUBACKed by the edge. The
bridges then start; the drain is timed from the first message leaving the queue to the last, so
process start-up is not counted. What they publish goes to the pipeline's ``telemetry``
exchange and is stored by its writers, as in production.

    python -m tools.bench.mqtt_drain --messages 50000 --bridges 1 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aio_pika
import httpx
import orjson

from shared import edge
from shared.db import create_pool
from shared.edge import EdgeSettings, service_credentials
from shared.machines import MachineRepository
from shared.settings import AmqpSettings, MqttSettings, PostgresSettings
from tools.bench.figures import Context, Figure
from tools.bench.stack import cpu_seconds
from tools.bench.table import Row
from tools.simulator.mqtt import MqttPublisher

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _factories(machines: list[str]) -> dict[str, str]:
    pool = create_pool(PostgresSettings(), "bench")
    await pool.open(wait=True)
    try:
        found = await MachineRepository(pool).get_many(machines)
    finally:
        await pool.close()
    return {m: found[m].factory_id for m in machines if found.get(m) is not None}


def _publish(topics: list[str], count: int, offset: int, start_us: int) -> int:
    """One publisher thread: ``count`` messages round-robin over ``topics``; all PUBACKed."""
    m = MqttSettings()
    user, password = service_credentials(m, AmqpSettings()) or (None, None)
    with MqttPublisher(
        m.host,
        m.port,
        client_id=f"{user or 'bench'}-drain-{uuid.uuid4().hex[:8]}",
        username=user,
        password=password,
        max_outstanding=2000,
    ) as pub:
        for i in range(count):
            j = offset + i
            body = orjson.dumps(
                {"timestamp": _iso(start_us + j), "temperature": 20.0 + (j % 500) / 10}
            )
            pub.publish(topics[j % len(topics)], body)
        if not pub.flush(300):
            raise RuntimeError(f"{pub.outstanding} messages never PUBACKed")
        return pub.acked


def _iso(us: int) -> str:
    s, frac = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{frac:06d}Z"


def _poll_s(first: tuple[float, int, float] | None, now: float, done: int, total: int) -> float:
    """How long to wait before reading the bridges' counters again: 20 ms around the start and
    the expected end (the two instants timed), 200 ms in between. Each read is a ``/metrics``
    request the bridge serves with its own CPU (~1.4 ms each), which at a constant 20 ms added
    several µs to every message of the figure being measured."""
    if first is None or done <= first[1]:
        return 0.02
    rate = (done - first[1]) / max(1e-6, now - first[0])
    return 0.02 if (total - done) < rate * 0.3 else 0.2


class Drain:
    def __init__(self, machines: list[str], messages: int) -> None:
        self.machines = machines
        self.messages = messages
        self.tag = uuid.uuid4().hex[:8]
        self.prefix = f"bench-drain-{self.tag}"
        self.edge = EdgeSettings(
            queue=f"bench.drain.{self.tag}",
            topic_template=f"{self.prefix}/factory/{{factory_id}}/machine/{{machine_id}}/telemetry",
        )
        self.amqp = AmqpSettings()

    async def backlog(self) -> float:
        """Fill the edge queue; returns the publish rate (messages/s, all PUBACKed)."""
        factories = await _factories(self.machines)
        topics = [
            self.edge.template.topic(factories[m], m) for m in self.machines if m in factories
        ]
        async with await aio_pika.connect(self.amqp.url.get_secret_value()) as conn:
            channel = await conn.channel()
            await edge.declare(channel, self.edge, self.amqp)
        start_us = (time.time_ns() // 1000) - 3_600_000_000  # an hour ago, µs apart
        threads = 4
        shares = [self.messages * i // threads for i in range(threads + 1)]
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(threads) as pool:
            acked = await asyncio.gather(
                *(
                    loop.run_in_executor(
                        pool, _publish, topics, shares[i + 1] - shares[i], shares[i], start_us
                    )
                    for i in range(threads)
                )
            )
        elapsed = time.monotonic() - started
        assert sum(acked) == self.messages, acked
        return self.messages / elapsed

    def _start_bridge(self, i: int) -> tuple[subprocess.Popen[bytes], int]:
        port = _free_port()
        env = {
            **os.environ,
            "MQTT_BRIDGE_PORT": str(port),
            "MQTT_EDGE_QUEUE": self.edge.queue,
            "MQTT_BRIDGE_TOPIC_TEMPLATE": self.edge.topic_template,
            "MQTT_TOPICS": orjson.dumps([]).decode(),
            "MQTT_CLIENT_ID": f"bench-drain-{self.tag}-{i}",
            "LOG_LEVEL": "WARNING",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.mqtt_bridge"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return proc, port

    async def drain(self, bridges: int, poll_ms: float = 0) -> dict[str, float]:
        """Start ``bridges`` processes on the backlog; time from their first finished message to
        the last (``millrace_mqtt_messages_total`` of every bridge), and their CPU meanwhile."""
        procs = [self._start_bridge(i) for i in range(bridges)]
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:

                async def finished() -> int:
                    total = 0
                    for _, port in procs:
                        try:
                            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                        except httpx.HTTPError:
                            continue
                        for line in text.splitlines():
                            if line.startswith("millrace_mqtt_messages_total{"):
                                total += int(float(line.rsplit(" ", 1)[1]))
                    return total

                deadline = time.monotonic() + 600
                first: tuple[float, int, float] | None = None
                while (done := await finished()) < self.messages:
                    now = time.monotonic()
                    if first is None and done > 0:
                        first = (now, done, sum(cpu_seconds(p.pid) for p, _ in procs))
                    if now > deadline or any(p.poll() is not None for p, _ in procs):
                        raise RuntimeError(f"drain stuck at {done} of {self.messages} messages")
                    wait = poll_ms / 1000 or _poll_s(first, now, done, self.messages)
                    await asyncio.sleep(wait)
                end = time.monotonic()
                cpu = sum(cpu_seconds(p.pid) for p, _ in procs)
                groups = 0.0
                for _, port in procs:  # after the CPU reading: this scrape is not counted
                    text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                    for line in text.splitlines():
                        if line.startswith("millrace_mqtt_group_messages_count "):
                            groups += float(line.rsplit(" ", 1)[1])
            assert first is not None
            drained = self.messages - first[1]
            return {
                "rate": drained / max(1e-6, end - first[0]),
                "cpu_us": (cpu - first[2]) * 1e6 / max(1, drained),
                "group": self.messages / max(1.0, groups),
            }
        finally:
            for proc, _ in procs:
                proc.terminate()
            for proc, _ in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()

    async def close(self) -> None:
        async with await aio_pika.connect(self.amqp.url.get_secret_value()) as conn:
            channel = await conn.channel()
            await channel.queue_delete(self.edge.queue)


async def run(
    machines: list[str], messages: int, bridges: list[int], poll_ms: float = 0
) -> dict[str, float]:
    out: dict[str, float] = {}
    for n in bridges:
        d = Drain(machines, messages)
        try:
            out[f"drain.publish_rate.{n}"] = await d.backlog()
            figures = await d.drain(n, poll_ms)
        finally:
            await d.close()
        out[f"drain.rate.{n}"] = figures["rate"]
        out[f"drain.cpu_us.{n}"] = figures["cpu_us"]
        out[f"drain.group.{n}"] = figures["group"]
    return out


# ---------------------------------------------------------------- make bench
async def measure(ctx: Context) -> dict[str, float]:
    messages = getattr(ctx.args, "drain_messages", None) or 30_000
    return await run(ctx.machines, messages, [1, 2])


def rows(ctx: Context, v: dict[str, float]) -> list[Row]:
    one, two = v["drain.rate.1"], v["drain.rate.2"]
    scale = two / one if one else 0.0
    cpu = v["drain.cpu_us.1"]
    return [
        Row(
            "MQTT backlog drained by 1 bridge, messages/s",
            f"{one:,.0f}",
            f"edge publish {v['drain.publish_rate.1']:,.0f}/s",
            "-",
            "-",
            "-",
        ),
        Row(
            "MQTT backlog drained by 2 bridges, messages/s",
            f"{two:,.0f}",
            f"1 bridge {one:,.0f}",
            f"{scale:.2f}",
            "≥ 1.7 where cores allow",
            "yes" if scale >= 1.7 else "NO",
        ),
        Row(
            "mqtt_bridge CPU µs per message (1 bridge)",
            f"{cpu:.1f}",
            "-",
            "-",
            "≤ 30",
            "yes" if cpu <= 30 else "NO",
        ),
    ]


FIGURES = [Figure("drain", measure, rows)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench.mqtt_drain", description=__doc__)
    p.add_argument("--messages", type=int, default=30_000, help="backlog size (messages)")
    p.add_argument("--bridges", type=int, nargs="+", default=[1, 2], help="bridge counts to try")
    p.add_argument("--machines", type=int, default=20, help="registered machines to publish for")
    p.add_argument(
        "--poll-ms",
        type=float,
        default=0,
        help="read the bridges' counters at this fixed interval (default: 20 ms near the start"
        " and the end, 200 ms in between)",
    )
    p.add_argument("--query-url", default=os.environ.get("QUERY_API_URL", ""))
    args = p.parse_args(argv)
    machines = asyncio.run(_registered(args.machines))
    if not machines:
        print("no registered machines: run make up and make demo first", file=sys.stderr)
        return 2
    figures = asyncio.run(run(machines, args.messages, args.bridges, args.poll_ms))
    for n in args.bridges:
        print(
            f"{n} bridge(s): drained {figures[f'drain.rate.{n}']:,.0f} messages/s,"
            f" {figures[f'drain.cpu_us.{n}']:.1f} µs CPU per message,"
            f" {figures[f'drain.group.{n}']:,.0f} messages per group;"
            f" backlog published at {figures[f'drain.publish_rate.{n}']:,.0f}/s"
        )
    return 0


async def _registered(n: int) -> list[str]:
    pool = create_pool(PostgresSettings(), "bench")
    await pool.open(wait=True)
    try:
        machines, _ = await MachineRepository(pool).list({}, limit=n, offset=0)
    finally:
        await pool.close()
    return [m.id for m in machines]


if __name__ == "__main__":
    raise SystemExit(main())
