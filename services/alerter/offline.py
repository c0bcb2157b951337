"""Offline rules: a machine silent longer than ``offline_after_s`` raises an alert; its next
reading clears it.

"Last seen" is the newest reading the write path recorded (Redis, ``shared.keys.status_key``: the
hash the query API's status endpoint reads), so it does not depend on which alerter replica
consumes readings. One replica sweeps at a time: the holder of a PostgreSQL advisory lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
import redis.asyncio as aioredis
from aio_pika.abc import AbstractExchange
from redis.exceptions import RedisError

from services.alerter.rules import Action, Rule
from services.alerter.store import AlertStore
from shared import alert_events, broker
from shared.db import DB_UNAVAILABLE
from shared.keys import status_key
from shared.settings import PostgresSettings

log = logging.getLogger(__name__)
SWEEP_ERRORS: tuple[type[BaseException], ...] = (
    RedisError,
    psycopg.Error,
    *DB_UNAVAILABLE,
    *broker.PUBLISH_ERRORS,
)
_LEADER_LOCK = 0x416C7274  # "Alrt"


def offline_actions(
    rules: list[Rule],
    machines: list[dict[str, Any]],
    open_pairs: set[tuple[str, str]],
    now_ns: int,
) -> list[Action]:
    """Pure: which offline alerts to open and which to clear. A machine never seen is not
    offline (it has no expected interval yet)."""
    out: list[Action] = []
    for rule in rules:
        if rule.kind != "offline" or rule.offline_after_s is None:
            continue
        limit = rule.offline_after_s * 1_000_000_000
        for m in machines:
            seen = m.get("last_seen_ns")
            if seen is None or not rule.applies(m):
                continue
            silent = now_ns - seen > limit
            is_open = (rule.id, m["machine_id"]) in open_pairs
            reading = {**m, "ts": now_ns if silent else seen}
            silent_s = (now_ns - seen) / 1e9
            if silent and not is_open:
                out.append(Action("open", rule, reading, silent_s, seen))
            elif not silent and is_open:
                out.append(Action("clear", rule, reading, silent_s, seen))
    return out


class OfflineWatch:
    def __init__(
        self,
        postgres: PostgresSettings,
        store: AlertStore,
        redis: aioredis.Redis,
        every_s: float,
    ) -> None:
        self.postgres = postgres
        self.store = store
        self.redis = redis
        self.every_s = every_s
        self.rules: list[Rule] = []
        self._leader: psycopg.AsyncConnection[Any] | None = None

    async def _is_leader(self) -> bool:
        if self._leader is not None and not self._leader.closed:
            return True
        conn = await psycopg.AsyncConnection.connect(
            self.postgres.url.get_secret_value(), autocommit=True
        )
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_LEADER_LOCK,))
        row = await cur.fetchone()
        if row and row[0]:
            self._leader = conn
            log.info("offline sweep: this replica leads")
            return True
        await conn.close()
        return False

    async def _last_seen(self, machines: list[dict[str, Any]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for m in machines:
                pipe.hget(status_key(m["machine_id"]), "ts_ms")
            results = await pipe.execute()
        # The machines keep their registered factory and location (the registry's).
        for m, ts_ms in zip(machines, results, strict=True):
            m["last_seen_ns"] = int(ts_ms) * 1_000_000 if ts_ms else None

    async def sweep_once(self, exchange: AbstractExchange) -> int:
        if not any(r.kind == "offline" for r in self.rules) or not await self._is_leader():
            return 0
        machines = await self.store.machines()
        await self._last_seen(machines)
        open_pairs = {
            (str(a["rule_id"]), str(a["machine_id"]))
            for a in await self.store.open_alerts(kind="offline")
        }
        done = 0
        for action in offline_actions(self.rules, machines, open_pairs, time.time_ns()):
            alert = await (self.store.open if action.kind == "open" else self.store.clear)(action)
            if alert is not None:
                event = "opened" if action.kind == "open" else "cleared"
                await alert_events.publish(exchange, event, alert)
                done += 1
        return done

    async def run(self, exchange: AbstractExchange) -> None:
        while True:
            try:
                await self.sweep_once(exchange)
            except SWEEP_ERRORS as e:
                log.warning("offline sweep failed, retrying in %s s: %s", self.every_s, e)
                if self._leader is not None:
                    await self._leader.close()
                    self._leader = None
            await asyncio.sleep(self.every_s)

    async def close(self) -> None:
        if self._leader is not None:
            await self._leader.close()
