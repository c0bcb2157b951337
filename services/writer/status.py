"""Latest status per machine, kept current by the write path in Redis.

After each stored batch: for every machine, its newest reading goes to the hash
``millrace:status:<machine_id>`` unless a newer one is already there (late data never moves
"last seen" backwards), and ``millrace:machine:<machine_id>:version`` is incremented so that
cached history answers for that machine are never served after new data arrived.

Redis is a derived view here: when it is down the batch is still acked and a WARNING logged.
"""

from __future__ import annotations

import logging
import time
from operator import itemgetter
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.keys import status_key, version_key

log = logging.getLogger(__name__)

# Compare in milliseconds: Lua numbers are doubles and nanoseconds would lose precision.
_SET_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], 'ts_ms')
if (not current) or tonumber(current) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'ts_ms', ARGV[1], 'values', ARGV[2], 'factory_id', ARGV[3],
             'sensor_type', ARGV[4], 'location', ARGV[5])
end
redis.call('HSET', KEYS[1], 'received_ms', ARGV[6])
return redis.call('INCR', KEYS[2])
"""


_TS = itemgetter("ts")
_MACHINE = itemgetter("machine_id")


def newest_per_machine(readings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each machine's reading with the latest timestamp (C-level: a sort by timestamp, then a
    dict keeps each machine's last)."""
    ordered = sorted(readings, key=_TS)
    return dict(zip(map(_MACHINE, ordered), ordered, strict=True))


class StatusUpdater:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(_SET_IF_NEWER)
        self._failing = False

    async def update(self, readings: list[dict[str, Any]]) -> None:
        newest = newest_per_machine(readings)
        if not newest:
            return
        now_ms = str(time.time_ns() // 1_000_000)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for mid, r in newest.items():
                    await self._script(
                        keys=[status_key(mid), version_key(mid)],
                        args=[
                            int(r["ts"]) // 1_000_000,
                            orjson.dumps(r["fields"]),
                            r["factory_id"],
                            r["sensor_type"],
                            r["location"],
                            now_ms,
                        ],
                        client=pipe,
                    )
                await pipe.execute()
        except (RedisError, OSError) as e:
            if not self._failing:
                log.warning(
                    "Redis unreachable, live status not updated (%s); retrying with next batch",
                    e,
                    extra={"dependency": "redis"},
                )
            self._failing = True
            return
        if self._failing:
            log.info(
                "Redis reachable again; live status updates resumed", extra={"dependency": "redis"}
            )
            self._failing = False
