"""Machines registered straight in the tests' PostgreSQL (the registry the doors, the bridge and
the query API read), each with a name of its own."""

from __future__ import annotations

import uuid

from shared.db import create_pool, migrate
from shared.machines import Machine, MachineRepository
from shared.settings import PostgresSettings


async def register_machines(
    pg: PostgresSettings,
    n: int,
    *,
    location: str,
    sensor_type: str = "Temperature",
    factory: str = "default",
    prefix: str = "M",
) -> list[Machine]:
    """``n`` new active machines at ``location`` in ``factory``, named ``<prefix>-<random>``."""
    pool = create_pool(pg, "tests")
    await pool.open(wait=True)
    try:
        await migrate(pool)
        repo = MachineRepository(pool)
        return [
            await repo.create(
                f"{prefix}-{uuid.uuid4().hex[:6]}", location, sensor_type, "active", factory
            )
            for _ in range(n)
        ]
    finally:
        await pool.close()
