"""Consumer floors under the MQTT bridge: what consuming the edge queue costs before our code.

Each floor drains its own private edge queue, filled beforehand over MQTT exactly as
``tools.bench.mqtt_drain`` fills it (single-reading QoS 1 JSON bodies, PUBACKed by RabbitMQ's
MQTT plugin), in a fresh process, and reports that process's CPU per message (CPU time from the
first delivery to the last acknowledgement, divided by the messages) and messages/s:

- ``aio-pika``: a bare aio-pika consumer (robust connection, as the bridge) that only acks,
  ``basic.ack(multiple)`` every ``--ack-every`` messages, prefetch ``--prefetch``;
- ``aiormq``: the same on aiormq, the library under aio-pika (no per-delivery aio-pika objects);
- ``triage``: ``aio-pika`` plus the bridge's per-message ``inbound`` and, per group of
  ``--ack-every``, its ``classify`` (topic and JSON payload validation) and ``resolve`` (stored
  readings, machines known beforehand);
- ``republish``: ``triage`` plus the bridge's envelopes published with confirms through the
  bridge's ``Publisher`` to a private exchange, up to ``--groups-in-flight`` groups at once, each
  group acked after its confirms, in order;
- ``bridge``: the bridge's own pipeline (``Bridge`` and ``EdgeLink``, metrics and logging
  included) in-process, without its HTTP server, status link and Redis machine cache.

``python -m tools.bench.mqtt_drain --bridges 1`` measures the whole bridge process on the same
backlog. Run it under the suite lock:

    flock -o /tmp/millrace-suite.lock python -m tools.bench.consume_floor --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import aio_pika
import aiormq
import orjson

from services.mqtt_bridge.settings import BridgeOptions
from shared.db import create_pool
from shared.edge import EdgeSettings
from shared.machines import Machine, MachineRepository
from shared.settings import AmqpSettings, PostgresSettings
from tools.bench.mqtt_drain import ROOT, Drain, _registered

FLOORS = ("aio-pika", "aiormq", "triage", "republish", "bridge")


# ---------------------------------------------------------------- the consumer (child process)
class Meter:
    """Counts finished messages; CPU and wall time from the first delivery to the last."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.done = 0
        self.cpu0 = self.wall0 = 0.0
        self.finished = asyncio.get_running_loop().create_future()

    def first(self) -> None:
        if not self.wall0:
            self.cpu0, self.wall0 = time.process_time(), time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        if self.done >= self.expected and not self.finished.done():
            self.finished.set_result(
                (time.process_time() - self.cpu0, time.monotonic() - self.wall0)
            )


async def _machines(ids: list[str]) -> dict[str, Machine | None]:
    pool = create_pool(PostgresSettings(), "bench")
    await pool.open(wait=True)
    try:
        return dict(await MachineRepository(pool).get_many(ids))
    finally:
        await pool.close()


async def _aiormq(url: str, queue: str, meter: Meter, prefetch: int, ack_every: int) -> None:
    conn = await aiormq.connect(url)
    try:
        channel = await conn.channel()
        await channel.basic_qos(prefetch_count=prefetch)
        seen = unacked = 0

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            nonlocal seen, unacked
            meter.first()
            seen += 1
            unacked += 1
            if unacked >= ack_every or seen == meter.expected:
                n, unacked = unacked, 0  # before the await: other deliveries run meanwhile
                await channel.basic_ack(message.delivery_tag or 0, multiple=True)
                meter.add(n)

        await channel.basic_consume(queue, on_message, no_ack=False)
        await meter.finished
    finally:
        await conn.close()


async def _aio_pika(
    url: str,
    queue_name: str,
    meter: Meter,
    prefetch: int,
    ack_every: int,
    floor: str,
    groups_in_flight: int,
) -> None:
    from services.mqtt_bridge.link import Inbound, inbound
    from services.mqtt_bridge.settings import Settings
    from services.mqtt_bridge.triage import classify, envelopes, new_request_id, resolve
    from shared.broker import Publisher, connect
    from shared.mqtt_topics import TopicTemplate
    from shared.readings import ValidationContext

    settings = Settings()
    template = TopicTemplate(settings.edge.topic_template)
    limits = settings.limits
    ctx = ValidationContext(
        extra_fields=dict(limits.extra_fields),
        max_future_skew_s=limits.max_future_skew_s,
        max_batch_items=limits.max_batch_items,
        max_readings_per_item=limits.max_readings_per_item,
    )
    known = await _machines(orjson.loads(os.environ["FLOOR_MACHINES"]))
    amqp = AmqpSettings()
    conn = await connect(amqp, f"consume_floor {floor}")
    publisher: Publisher | None = None
    if floor == "republish":
        tag = queue_name.rsplit(".", 1)[-1]
        private = AmqpSettings(
            exchange=f"bench.floor.{tag}.x",
            queue=f"bench.floor.{tag}.out",
            dead_letter=f"bench.floor.{tag}.dead",
        )
        publisher = Publisher(private, conn)
        await publisher.start()
    try:
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.declare_queue(queue_name, passive=True)
        group: list[Inbound] = []
        in_flight: asyncio.Queue[tuple[Inbound, asyncio.Task[None]]] = asyncio.Queue(
            maxsize=groups_in_flight
        )
        seen = unacked = 0

        async def publish(messages: list[Inbound]) -> None:
            assert publisher is not None
            request_id = new_request_id()
            triage = classify(messages, template, ctx.with_now())
            readings, _, _ = resolve(triage, known)
            data = envelopes(
                readings,
                gateway_id="floor",
                request_id=request_id,
                per_message=limits.readings_per_message,
            )
            await publisher.publish(data)

        async def acker() -> None:
            while True:
                last, task = await in_flight.get()
                await task
                await last.channel.basic_ack(last.tag, multiple=True)
                meter.add(int(task.get_name()))

        acking = asyncio.create_task(acker()) if publisher is not None else None

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen, unacked, group
            meter.first()
            seen += 1
            if floor == "aio-pika":
                unacked += 1
                if unacked >= ack_every or seen == meter.expected:
                    n, unacked = unacked, 0  # before the await: other deliveries run meanwhile
                    await message.ack(multiple=True)
                    meter.add(n)
                return
            group.append(inbound(message))
            if len(group) < ack_every and seen < meter.expected:
                return
            full, group = group, []
            if floor == "triage":
                triage = classify(full, template, ctx.with_now())
                resolve(triage, known)
                await message.ack(multiple=True)
                meter.add(len(full))
                return
            task = asyncio.create_task(publish(full), name=str(len(full)))
            await in_flight.put((full[-1], task))

        await queue.consume(on_message)
        await meter.finished
        if acking is not None:
            acking.cancel()
    finally:
        if publisher is not None:
            await publisher.close()
        await conn.close()


async def _bridge(queue_name: str, meter: Meter) -> None:
    from services.mqtt_bridge.bridge import Bridge
    from services.mqtt_bridge.link import EdgeLink, Inbound
    from services.mqtt_bridge.settings import Settings
    from shared.broker import Publisher, connect

    settings = Settings()
    known = await _machines(orjson.loads(os.environ["FLOOR_MACHINES"]))

    class Known:  # the registry's answer, known beforehand (the bridge caches it in Redis)
        async def get_many(self, ids: list[str]) -> dict[str, Machine | None]:
            return {i: known.get(i) for i in ids}

    tag = queue_name.rsplit(".", 1)[-1]
    private = AmqpSettings(
        exchange=f"bench.floor.{tag}.x",
        queue=f"bench.floor.{tag}.out",
        dead_letter=f"bench.floor.{tag}.dead",
    )
    conn = await connect(settings.amqp, "consume_floor bridge")
    publisher = Publisher(private, conn)
    await publisher.start()
    bridge = Bridge(settings, publisher, Known(), conn)  # type: ignore[arg-type]
    try:
        inbox_put = bridge._inbox.put_nowait

        def deliver(m: Inbound) -> None:
            meter.first()
            inbox_put(m)

        link = EdgeLink(settings, conn, deliver)
        acked = link.ack

        async def ack(messages: Any) -> tuple[int, int]:
            messages = list(messages)
            result = await acked(messages)
            meter.add(len(messages))
            return result

        link.ack = ack  # type: ignore[method-assign]
        bridge.run_pipeline(link)
        await link.start()
        await meter.finished
    finally:
        await bridge.stop(10)
        await publisher.close()
        await conn.close()


async def child(floor: str, queue_name: str, prefetch: int, ack_every: int, groups: int) -> None:
    url = AmqpSettings().url.get_secret_value()
    async with await aio_pika.connect(url) as conn:
        channel = await conn.channel()
        declared = await channel.declare_queue(queue_name, passive=True)
        expected = declared.declaration_result.message_count or 0
    meter = Meter(expected)
    if floor == "aiormq":
        await _aiormq(url, queue_name, meter, prefetch, ack_every)
    elif floor == "bridge":
        await _bridge(queue_name, meter)
    else:
        await _aio_pika(url, queue_name, meter, prefetch, ack_every, floor, groups)
    cpu, wall = meter.finished.result()
    print(orjson.dumps({"messages": expected, "cpu_s": cpu, "wall_s": wall}).decode())


# ---------------------------------------------------------------- the driver
async def _fill(machines: list[str], messages: int) -> Drain:
    d = Drain(machines, messages)
    d.edge = EdgeSettings(queue=f"bench.floor.{d.tag}", topic_template=d.edge.topic_template)
    await d.backlog()
    return d


async def _cleanup(d: Drain) -> None:
    url = d.amqp.url.get_secret_value()
    async with await aio_pika.connect(url) as conn:
        channel = await conn.channel()
        await channel.queue_delete(d.edge.queue)
        for name in (f"bench.floor.{d.tag}.out", f"bench.floor.{d.tag}.dead"):
            channel = await conn.channel()
            await channel.queue_delete(name)  # RabbitMQ: deleting what is absent is fine
        for name in (f"bench.floor.{d.tag}.x", f"bench.floor.{d.tag}.dead"):
            channel = await conn.channel()
            await channel.exchange_delete(name)


def _run_child(
    d: Drain, floor: str, machines: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    env = {
        **os.environ,
        "MQTT_EDGE_QUEUE": d.edge.queue,
        "MQTT_BRIDGE_TOPIC_TEMPLATE": d.edge.topic_template,
        "MQTT_BRIDGE_MAX_INFLIGHT": str(args.prefetch),
        "MQTT_BRIDGE_GROUP_MAX_MESSAGES": str(args.ack_every),
        "MQTT_BRIDGE_GROUPS_IN_FLIGHT": str(args.groups_in_flight),
        "MQTT_TOPICS": "[]",
        "MQTT_CLIENT_ID": f"bench-floor-{d.tag}",
        "LOG_LEVEL": "WARNING",
        "FLOOR_MACHINES": orjson.dumps(machines).decode(),
    }
    cmd = [sys.executable, "-m", "tools.bench.consume_floor", "--child", floor]
    cmd += ["--queue", d.edge.queue, "--prefetch", str(args.prefetch)]
    cmd += ["--ack-every", str(args.ack_every), "--groups-in-flight", str(args.groups_in_flight)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{floor} failed: {out.stderr.decode()[-2000:]}")
    result: dict[str, Any] = orjson.loads(out.stdout.splitlines()[-1])
    return result


async def drive(
    args: argparse.Namespace, report: Callable[[str], None]
) -> dict[str, list[dict[str, float]]]:
    machines = await _registered(args.machines)
    if not machines:
        raise SystemExit("no registered machines: run make up and make demo first")
    figures: dict[str, list[dict[str, float]]] = {f: [] for f in args.floors}
    for run in range(1, args.runs + 1):
        for floor in args.floors:  # interleaved, so that each round sees the same machine
            d = await _fill(machines, args.messages)
            try:
                r = await asyncio.to_thread(_run_child, d, floor, machines, args)
            finally:
                await _cleanup(d)
            fig = {
                "cpu_us": r["cpu_s"] * 1e6 / r["messages"],
                "rate": r["messages"] / r["wall_s"],
            }
            figures[floor].append(fig)
            report(
                f"run {run} {floor:>9}: {r['messages']} messages, {fig['rate']:8,.0f} msg/s,"
                f" {fig['cpu_us']:6.1f} µs CPU per message"
            )
    return figures


def main(argv: list[str] | None = None) -> int:
    defaults = BridgeOptions()
    p = argparse.ArgumentParser(
        prog="python -m tools.bench.consume_floor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--floors", nargs="+", choices=FLOORS, default=list(FLOORS))
    p.add_argument("--messages", type=int, default=20_000, help="backlog per floor and run")
    p.add_argument("--runs", type=int, default=3, help="runs of each floor (median reported)")
    p.add_argument("--machines", type=int, default=20, help="registered machines to publish for")
    p.add_argument("--prefetch", type=int, default=defaults.max_inflight, help="AMQP prefetch")
    p.add_argument(
        "--ack-every",
        type=int,
        default=defaults.group_max_messages,
        help="messages per multiple-ack (and per group)",
    )
    p.add_argument("--groups-in-flight", type=int, default=defaults.groups_in_flight)
    p.add_argument("--child", choices=FLOORS, help=argparse.SUPPRESS)
    p.add_argument("--queue", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        asyncio.run(
            child(args.child, args.queue, args.prefetch, args.ack_every, args.groups_in_flight)
        )
        return 0
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    figures = asyncio.run(drive(args, lambda line: print(line, flush=True)))
    print(
        f"\nmedians of {args.runs} runs, {args.messages} messages each, prefetch {args.prefetch},"
        f" multiple-ack every {args.ack_every}, started {started} UTC"
    )
    print(f"{'floor':>9}  {'msg/s':>8}  {'CPU µs/msg':>10}")
    for floor, runs in figures.items():
        rate = statistics.median(r["rate"] for r in runs)
        cpu = statistics.median(r["cpu_us"] for r in runs)
        print(f"{floor:>9}  {rate:8,.0f}  {cpu:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
