"""PostgreSQL: connection pool and versioned migrations applied at start-up.

Migrations are ``shared/migrations/NNNN_name.sql``, applied in order, each in its own
transaction, under an advisory lock so that several services starting together never race.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from shared.errors import DependencyUnavailable
from shared.settings import PostgresSettings
from shared.startup import wait_for

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x4D696C6C  # "Mill"
DB_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
)
# Anything that means "PostgreSQL cannot answer now" (down, restarting, pool exhausted, slow).
DB_UNAVAILABLE: tuple[type[BaseException], ...] = (
    *DB_ERRORS,
    psycopg.errors.QueryCanceled,
    TimeoutError,
)
# Readiness probes: any PostgreSQL error at all means "not ready".
DB_PROBE_ERRORS: tuple[type[BaseException], ...] = (psycopg.Error, *DB_UNAVAILABLE)
PERSIST_ATTEMPTS = 3
T = TypeVar("T")


async def persist(what: str, operation: Callable[[], Awaitable[T]]) -> T:
    """Run a PostgreSQL write with bounded retries: WARNING per retry, ERROR when exhausted.

    Raises :class:`DependencyUnavailable` (HTTP 503 + Retry-After) after the last attempt.
    """

    def warn(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "PostgreSQL write (%s) failed, attempt %d of %d: %s; retrying",
            what,
            state.attempt_number,
            PERSIST_ATTEMPTS,
            exc,
            extra={"dependency": "postgres", "attempt": state.attempt_number},
        )

    retrying = AsyncRetrying(
        stop=stop_after_attempt(PERSIST_ATTEMPTS),
        wait=wait_exponential(multiplier=0.1, max=1.0),
        retry=retry_if_exception_type(DB_ERRORS),
        before_sleep=warn,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await operation()
    except DB_ERRORS as e:
        log.error(
            "PostgreSQL could not persist %s after %d attempts: %s",
            what,
            PERSIST_ATTEMPTS,
            e,
            extra={"dependency": "postgres", "attempt": PERSIST_ATTEMPTS},
        )
        raise DependencyUnavailable("postgres", str(e)) from e
    raise AssertionError("unreachable")  # pragma: no cover


async def fetch_one(
    conn: AsyncConnection[Any], query: str, params: Sequence[Any] = ()
) -> dict[str, Any] | None:
    """The first row of ``query`` as a dict (column → value), or None."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def fetch_all(
    conn: AsyncConnection[Any], query: str, params: Sequence[Any] = ()
) -> list[dict[str, Any]]:
    """Every row of ``query`` as a dict (column → value)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def fetch_page(
    conn: AsyncConnection[Any],
    source: str,
    where: str,
    params: Sequence[Any],
    *,
    order_by: str,
    limit: int,
    offset: int,
    columns: str = "*",
) -> tuple[list[dict[str, Any]], int]:
    """One page of a list answer: the rows of ``source`` matching ``where`` (SQL with ``%s``
    placeholders for ``params``; empty: every row) in ``order_by`` order, and how many match in
    all (the ``total_records`` of its pagination, see ``shared.schemas.page``)."""
    clause = f" WHERE {where}" if where else ""
    counted = await fetch_one(conn, f"SELECT count(*) AS n FROM {source}{clause}", params)
    rows = await fetch_all(
        conn,
        f"SELECT {columns} FROM {source}{clause} ORDER BY {order_by} LIMIT %s OFFSET %s",
        [*params, limit, offset],
    )
    return rows, int(counted["n"]) if counted else 0


def create_pool(settings: PostgresSettings, name: str) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        settings.url.get_secret_value(),
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        timeout=settings.timeout_s,
        kwargs={"application_name": name, "connect_timeout": max(1, int(settings.timeout_s))},
        # Every connection is checked as it is handed out: after a PostgreSQL restart the pool
        # is full of dead ones, and without the check each was found out only by failing a
        # request (/ready stayed false for ~5 minutes after one restart).
        check=AsyncConnectionPool.check_connection,
        open=False,
    )


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration, in version order."""
    out = []
    for entry in resources.files("shared.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text()))
    return sorted(out)


async def open_postgres(settings: PostgresSettings, name: str) -> AsyncConnectionPool:
    """A service's pool, once PostgreSQL answers (bounded, logged retries), schema migrated."""
    pool = create_pool(settings, name)
    await wait_for("postgres", lambda: pool.open(wait=True), (*DB_ERRORS, TimeoutError))
    await migrate(pool)
    return pool


async def migrate(pool: AsyncConnectionPool) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    applied_now: list[str] = []
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        await conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for version, name, sql in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied_now.append(name)
                log.info("applied migration %s", name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
            await conn.set_autocommit(False)
    return applied_now
