"""The machine registry (PostgreSQL ``machine_metadata``) behind a Redis cache-aside.

Reads go: a small in-process cache (a few seconds), then Redis, then PostgreSQL. Writes go to
PostgreSQL and then delete the Redis key, so a read right after a write sees it. A change made
through another process becomes visible to every process within ``local_ttl_s`` (default 5 s).
If Redis is down when a change is made, the deletion is retried before the next Redis read of
this process; other processes may serve the old entry until its TTL (60 s) ends.
Redis is only a cache: when it fails, reads fall through to PostgreSQL (see RedisGuard).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
import redis.asyncio as aioredis
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from shared.db import fetch_page
from shared.keys import machine_key
from shared.redisguard import REDIS_ERRORS, RedisGuard
from shared.timefmt import row_iso as _iso

log = logging.getLogger(__name__)

STATUSES = ("active", "inactive", "maintenance", "error")
_COLUMNS = "id, name, location, sensor_type, status, created_at, updated_at, factory_id"
# What a change may set (factory_id: moving a machine to another factory).
_CHANGEABLE = ("name", "location", "sensor_type", "status", "factory_id")


@dataclass(slots=True, frozen=True)
class Machine:
    id: str
    name: str
    location: str
    sensor_type: str
    status: str
    created_at: str
    updated_at: str
    # A Redis entry cached before machines had a factory reads as the default one.
    factory_id: str = "default"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Machine:
        return cls(
            id=str(row["id"]),
            name=row["name"],
            location=row["location"],
            sensor_type=row["sensor_type"],
            status=row["status"],
            created_at=_iso(row["created_at"]),
            updated_at=_iso(row["updated_at"]),
            factory_id=row["factory_id"],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "location": self.location,
            "sensor_type": self.sensor_type,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "factory_id": self.factory_id,
        }


class MachineRepository:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def create(
        self,
        name: str,
        location: str,
        sensor_type: str,
        status: str,
        factory_id: str = "default",
    ) -> Machine:
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "INSERT INTO machine_metadata (name, location, sensor_type, status, factory_id)"
                f" VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (name, location, sensor_type, status, factory_id),
            )
            row = await cur.fetchone()
            assert row is not None
            return Machine.from_row(row)

    async def get_many(self, ids: list[str]) -> dict[str, Machine]:
        if not ids:
            return {}
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT {_COLUMNS} FROM machine_metadata WHERE id = ANY(%s::uuid[])", (ids,)
            )
            return {str(r["id"]): Machine.from_row(r) for r in await cur.fetchall()}

    async def list(
        self,
        filters: dict[str, str],
        limit: int,
        offset: int,
        factories: list[str] | None = None,
    ) -> tuple[list[Machine], int]:
        """Machines matching ``filters`` (by column), of ``factories`` only (None = every one)."""
        where = []
        params: list[Any] = []
        for column in ("location", "status", "sensor_type", "factory_id"):
            if column in filters:
                where.append(f"{column} = %s")
                params.append(filters[column])
        if factories is not None:
            where.append("factory_id = ANY(%s)")
            params.append(factories)
        async with self.pool.connection() as conn:
            rows, total = await fetch_page(
                conn,
                "machine_metadata",
                " AND ".join(where),
                params,
                order_by="name, id",
                limit=limit,
                offset=offset,
                columns=_COLUMNS,
            )
        return [Machine.from_row(r) for r in rows], total

    async def update(self, machine_id: str, changes: dict[str, str]) -> Machine | None:
        allowed = {k: v for k, v in changes.items() if k in _CHANGEABLE}
        if not allowed:
            found = await self.get_many([machine_id])
            return found.get(machine_id)
        sets = ", ".join(f"{k} = %s" for k in allowed)
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"UPDATE machine_metadata SET {sets}, updated_at = now() WHERE id = %s"
                f" RETURNING {_COLUMNS}",
                [*allowed.values(), machine_id],
            )
            row = await cur.fetchone()
            return Machine.from_row(row) if row else None

    async def delete(self, machine_id: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM machine_metadata WHERE id = %s", (machine_id,))
            return cur.rowcount > 0


class MachineCache:
    """Cache-aside over :class:`MachineRepository`, shared by ingest and query."""

    def __init__(
        self,
        repo: MachineRepository,
        redis: RedisGuard | aioredis.Redis | None,
        *,
        redis_ttl_s: int = 60,
        negative_ttl_s: int = 5,
        local_ttl_s: float = 5.0,
    ) -> None:
        self.repo = repo
        self.redis = RedisGuard(redis) if isinstance(redis, aioredis.Redis) else redis
        self.redis_ttl_s = redis_ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.local_ttl_s = local_ttl_s
        self._local: dict[str, tuple[float, Machine | None]] = {}
        # Invalidations that failed while Redis was down: done first when it is back.
        self._unflushed: set[str] = set()
        # Bumped by every invalidation. A lookup that read the databases while a machine changed
        # (its awaits interleave with the change) must not cache what it read: that value may be
        # the old one, and would be served for the whole TTL.
        self._generation = 0

    @staticmethod
    def key(machine_id: str) -> str:
        return machine_key(machine_id)

    async def get_many(self, ids: list[str]) -> dict[str, Machine | None]:
        """Every id → its machine, or None when it does not exist."""
        now = time.monotonic()
        out: dict[str, Machine | None] = {}
        missing: list[str] = []
        for mid in ids:
            hit = self._local.get(mid)
            if hit is not None and hit[0] > now:
                out[mid] = hit[1]
            else:
                missing.append(mid)
        if not missing:
            return out
        generation = self._generation
        from_redis = await self._redis_get(missing)
        out.update(from_redis)
        still = [m for m in missing if m not in from_redis]
        if still:
            found = await self.repo.get_many(still)
            fresh = {m: found.get(m) for m in still}
            out.update(fresh)
            if generation == self._generation:
                await self._redis_set(fresh)
        if generation != self._generation:
            return out
        if len(self._local) > 100_000:
            self._local.clear()
        expires = now + self.local_ttl_s
        for mid in missing:
            self._local[mid] = (expires, out[mid])
        return out

    async def get(self, machine_id: str) -> Machine | None:
        return (await self.get_many([machine_id]))[machine_id]

    async def invalidate(self, machine_id: str) -> None:
        self._generation += 1
        self._local.pop(machine_id, None)
        if self.redis is None:
            return
        self._unflushed.add(machine_id)
        if self.redis.usable():
            await self._flush_invalidations()

    async def _flush_invalidations(self) -> bool:
        assert self.redis is not None
        if not self._unflushed:
            return True
        pending = list(self._unflushed)
        try:
            await self.redis.client.delete(*(self.key(m) for m in pending))
        except REDIS_ERRORS as e:
            self.redis.failed("invalidate", e)
            return False
        self._unflushed.difference_update(pending)
        self.redis.ok()
        return True

    async def _redis_get(self, ids: list[str]) -> dict[str, Machine | None]:
        if self.redis is None or not self.redis.usable():
            return {}
        if not await self._flush_invalidations():
            return {}
        try:
            raw = await self.redis.client.mget([self.key(m) for m in ids])
            self.redis.ok()
        except REDIS_ERRORS as e:
            self.redis.failed("read", e)
            return {}
        out: dict[str, Machine | None] = {}
        for mid, value in zip(ids, raw, strict=True):
            if value is None:
                continue
            if value in (b"", ""):
                out[mid] = None
                continue
            cached = orjson.loads(value)
            # An entry cached by a process that predates factories has none: a miss, read again
            # (its factory decides what a credential may write for).
            if "factory_id" in cached:
                out[mid] = Machine(**cached)
        return out

    async def _redis_set(self, machines: dict[str, Machine | None]) -> None:
        if self.redis is None or not machines or not self.redis.usable():
            return
        try:
            async with self.redis.client.pipeline(transaction=False) as pipe:
                for mid, m in machines.items():
                    if m is None:
                        pipe.set(self.key(mid), b"", ex=self.negative_ttl_s)
                    else:
                        pipe.set(self.key(mid), orjson.dumps(m.as_dict()), ex=self.redis_ttl_s)
                await pipe.execute()
            self.redis.ok()
        except REDIS_ERRORS as e:
            self.redis.failed("write", e)


def valid_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True
