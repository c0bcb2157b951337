"""Simulated machines must exist in the registry: find or create them in PostgreSQL."""

from __future__ import annotations

from shared.db import open_postgres
from shared.machines import Machine, MachineRepository
from shared.settings import PostgresSettings

SENSOR_TYPES = ("Temperature", "Pressure", "Speed")


def location_of(factory_id: str) -> str:
    return f"Simulator {factory_id}"


async def ensure_machines(settings: PostgresSettings, factory_id: str, count: int) -> list[Machine]:
    """``count`` machines registered for the simulated factory, reusing those from earlier runs."""
    pool = await open_postgres(settings, "simulator")
    try:
        repo = MachineRepository(pool)
        location = location_of(factory_id)
        existing, _ = await repo.list({"location": location}, limit=count, offset=0)
        machines = list(existing)
        for i in range(len(machines), count):
            machines.append(
                await repo.create(
                    f"SIM-{factory_id}-{i + 1:04d}",
                    location,
                    SENSOR_TYPES[i % len(SENSOR_TYPES)],
                    "active",
                    factory_id=factory_id,
                )
            )
        return machines
    finally:
        await pool.close()
