"""The ``dead_letters`` table: archive, list, count, inspect, lock for replay, mark, purge.

Reads and writes of one request go through the caller's pool or connection; the archive insert
is its own short transaction so that the message is acknowledged only after it committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.query_api.deadletters.records import LetterRecord
from shared.db import fetch_page

# Columns of the list (the bulky readings/raw/details only in the detail view).
_SUMMARY = (
    "id, message_id, reason, error, source, origin_source, gateway_id, request_id, topic,"
    " factory_id,"
    " COALESCE(details->>'machine_id', readings->0->>'machine_id') AS machine_id,"
    " jsonb_array_length(readings) AS readings_count, raw IS NOT NULL AS has_raw,"
    " first_seen, archived_at, attempts, replayed_at, replay_count, last_replay_at,"
    " last_replay_error"
)
_DETAIL = _SUMMARY + ", readings, raw, details"


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """Which letters a list, a purge or a replay applies to; ``factories`` is the caller's scope
    (None = every factory; a letter whose factory cannot be told belongs to none of them)."""

    reason: str | None = None
    source: str | None = None
    gateway_id: str | None = None
    factory_id: str | None = None
    factories: list[str] | None = None
    machine_id: str | None = None
    replayed: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: datetime | None = None  # purge: first seen strictly before

    def where(self) -> tuple[str, list[Any]]:
        """A SQL condition and its parameters; ``TRUE`` when nothing is filtered."""
        clauses: list[str] = []
        params: list[Any] = []
        for column in ("reason", "source", "gateway_id", "factory_id"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        if self.machine_id is not None:
            clauses.append("(details->>'machine_id' = %s OR readings @> %s)")
            params += [self.machine_id, Jsonb([{"machine_id": self.machine_id}])]
        if self.factories is not None:
            clauses.append("factory_id = ANY(%s)")
            params.append(self.factories)
        if self.replayed is not None:
            clauses.append("replayed_at IS NOT NULL" if self.replayed else "replayed_at IS NULL")
        if self.since is not None:
            clauses.append("first_seen >= %s")
            params.append(self.since)
        if self.until is not None:
            clauses.append("first_seen < %s")
            params.append(self.until)
        if self.before is not None:
            clauses.append("first_seen < %s")
            params.append(self.before)
        return " AND ".join(clauses) or "TRUE", params


async def insert(pool: AsyncConnectionPool, rec: LetterRecord) -> bool:
    """Archive one letter; False when its message id is archived already (a redelivery)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO dead_letters (message_id, reason, error, source, origin_source,"
            " gateway_id, request_id, topic, readings, raw, details, first_seen, attempts,"
            " factory_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (message_id) DO NOTHING",
            (
                rec.message_id,
                rec.reason,
                rec.error,
                rec.source,
                rec.origin_source,
                rec.gateway_id,
                rec.request_id,
                rec.topic,
                Jsonb(rec.readings),
                rec.raw,
                Jsonb(rec.details),
                rec.first_seen,
                rec.attempts,
                rec.factory_id,
            ),
        )
        return cur.rowcount > 0


async def list_letters(
    pool: AsyncConnectionPool, flt: LetterFilter, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    where, params = flt.where()
    async with pool.connection() as conn:
        return await fetch_page(
            conn,
            "dead_letters",
            where,
            params,
            order_by="first_seen DESC, id DESC",
            limit=limit,
            offset=offset,
            columns=_SUMMARY,
        )


async def get(
    pool: AsyncConnectionPool, letter_id: int, scope: LetterFilter
) -> dict[str, Any] | None:
    """One letter of the caller's factories (``scope``), or None."""
    where, params = scope.where()
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_DETAIL} FROM dead_letters WHERE id = %s AND {where}", [letter_id, *params]
        )
        return await cur.fetchone()


async def stats(pool: AsyncConnectionPool, scope: LetterFilter) -> dict[str, Any]:
    """Totals, pending (not replayed) counts, by reason and by source, oldest and newest, of
    the letters ``scope`` selects."""
    where, params = scope.where()
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT count(*) AS total, count(*) FILTER (WHERE replayed_at IS NULL) AS pending,"
            " min(first_seen) AS oldest, max(first_seen) AS newest"
            f" FROM dead_letters WHERE {where}",
            params,
        )
        totals = await cur.fetchone()
        groups: dict[str, list[dict[str, Any]]] = {}
        for column in ("reason", "source"):
            await cur.execute(
                f"SELECT {column} AS key, count(*) AS total,"
                " count(*) FILTER (WHERE replayed_at IS NULL) AS pending"
                f" FROM dead_letters WHERE {where} GROUP BY {column} ORDER BY total DESC, {column}",
                params,
            )
            groups[column] = await cur.fetchall()
    assert totals is not None
    return {**totals, "by_reason": groups["reason"], "by_source": groups["source"]}


async def pending_by_reason(pool: AsyncConnectionPool) -> dict[str, int]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT reason, count(*) FROM dead_letters WHERE replayed_at IS NULL GROUP BY reason"
        )
        return {str(r[0]): int(r[1]) for r in await cur.fetchall()}


async def lock_for_replay(
    conn: AsyncConnection[Any],
    *,
    ids: list[int] | None = None,
    reason: str | None = None,
    limit: int = 100,
    force: bool = False,
    scope: LetterFilter | None = None,
) -> list[dict[str, Any]]:
    """Rows to replay, locked until the caller's transaction ends.

    Rows another replay holds are skipped (``SKIP LOCKED``), so two operators replaying at once
    never publish the same letter twice. By reason: the oldest ``limit`` not yet replayed.
    """
    cur = conn.cursor(row_factory=dict_row)
    where, params = (scope or LetterFilter()).where()
    if ids is not None:
        await cur.execute(
            f"SELECT {_DETAIL} FROM dead_letters WHERE id = ANY(%s) AND {where}"
            " ORDER BY id FOR UPDATE SKIP LOCKED",
            [ids, *params],
        )
    else:
        condition = "" if force else " AND replayed_at IS NULL"
        await cur.execute(
            f"SELECT {_DETAIL} FROM dead_letters WHERE reason = %s{condition} AND {where}"
            " ORDER BY first_seen, id LIMIT %s FOR UPDATE SKIP LOCKED",
            [reason, *params, limit],
        )
    return await cur.fetchall()


async def existing_ids(
    conn: AsyncConnection[Any], ids: list[int], scope: LetterFilter | None = None
) -> set[int]:
    where, params = (scope or LetterFilter()).where()
    cur = await conn.execute(
        f"SELECT id FROM dead_letters WHERE id = ANY(%s) AND {where}", [ids, *params]
    )
    return {int(r[0]) for r in await cur.fetchall()}


async def mark_replayed(conn: AsyncConnection[Any], ids: list[int]) -> None:
    if ids:
        await conn.execute(
            "UPDATE dead_letters SET replayed_at = now(), replay_count = replay_count + 1,"
            " last_replay_at = now(), last_replay_error = NULL WHERE id = ANY(%s)",
            (ids,),
        )


async def mark_still_invalid(conn: AsyncConnection[Any], failures: list[tuple[int, str]]) -> None:
    if failures:
        cur = conn.cursor()
        await cur.executemany(
            "UPDATE dead_letters SET last_replay_at = now(), last_replay_error = %s WHERE id = %s",
            [(error, letter_id) for letter_id, error in failures],
        )


async def purge(
    conn: AsyncConnection[Any], *, ids: list[int] | None, flt: LetterFilter
) -> dict[str, int]:
    """Delete the selected letters; how many were deleted, by reason."""
    where, params = flt.where()
    if ids is not None:
        where, params = f"id = ANY(%s) AND {where}", [ids, *params]
    cur = await conn.execute(
        "WITH gone AS (DELETE FROM dead_letters WHERE " + where + " RETURNING reason)"
        " SELECT reason, count(*) FROM gone GROUP BY reason",
        params,
    )
    return {str(r[0]): int(r[1]) for r in await cur.fetchall()}
