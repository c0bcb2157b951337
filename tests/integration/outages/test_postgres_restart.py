"""After a PostgreSQL restart the first request gets a working connection from the pool."""

from __future__ import annotations

import asyncio

import pytest

from shared.db import create_pool
from shared.settings import PostgresSettings
from tests.dependencies import DependencyControl

pytestmark = [pytest.mark.integration, pytest.mark.disruptive, pytest.mark.timeout(240)]


async def test_connections_killed_by_a_restart_are_replaced_before_use(
    postgres_settings: PostgresSettings, dependency_control: DependencyControl
) -> None:
    pool = create_pool(postgres_settings.model_copy(update={"pool_min": 4}), "restart-test")
    await pool.open(wait=True)
    try:

        async def hold() -> None:
            async with pool.connection() as conn:
                await conn.execute("SELECT pg_sleep(0.2)")

        await asyncio.gather(*(hold() for _ in range(4)))  # four idle connections in the pool
        for action in ("stop", "start"):
            await asyncio.to_thread(getattr(dependency_control, action), "postgres")
        # Every idle connection is dead now; the first request must not be handed one.
        async with pool.connection(timeout=10) as conn:
            cur = await conn.execute("SELECT 1")
            assert await cur.fetchone() == (1,)
    finally:
        await pool.close()
