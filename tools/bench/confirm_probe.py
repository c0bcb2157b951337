"""Publish→confirm latency of RabbitMQ alone, at a fixed rate: what the ingest door waits for
before it answers (README "Performance", the p99 row).

Messages of the size the door publishes (``--bytes``, ~100 readings) go persistent through the
default exchange into a private queue of each ``--queue-type`` (declared here, deleted after),
``--rate`` a second for ``--seconds``; each publish is timed until its confirm. Run it under the
suite lock, like every benchmark:

    flock -o /tmp/millrace-suite.lock python -m tools.bench.confirm_probe --queue-type quorum
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import aio_pika

from shared.settings import AmqpSettings
from tools.common.stats import percentile


async def probe(queue_type: str, rate: float, seconds: float, size: int) -> list[float]:
    """Confirm latencies (s) of ``rate * seconds`` publishes to a private ``queue_type`` queue."""
    connection = await aio_pika.connect(AmqpSettings().url.get_secret_value())
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            f"bench-confirm-probe-{queue_type}-{uuid.uuid4().hex[:8]}",
            durable=True,
            arguments={"x-queue-type": queue_type},
        )
        body = b"x" * size
        latencies: list[float] = []

        async def one() -> None:
            started = time.perf_counter()
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue.name,
            )
            latencies.append(time.perf_counter() - started)

        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        await queue.delete(if_unused=False, if_empty=False)
        return latencies
    finally:
        await connection.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench.confirm_probe", description=__doc__)
    p.add_argument("--queue-type", nargs="+", default=["quorum", "classic"])
    p.add_argument("--rate", type=float, default=260.0, help="publishes per second")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--bytes", type=int, default=38_500, help="message size (~100 readings)")
    a = p.parse_args(argv)
    for queue_type in a.queue_type:
        got = asyncio.run(probe(queue_type, a.rate, a.seconds, a.bytes))
        ms = [x * 1000 for x in got]
        print(
            f"{queue_type}: {len(ms)} confirms at {a.rate:g}/s of {a.bytes} B: "
            f"p50 {percentile(ms, 50):.1f}, p90 {percentile(ms, 90):.1f}, "
            f"p99 {percentile(ms, 99):.1f}, max {max(ms):.1f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
