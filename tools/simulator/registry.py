"""Simulated machines must exist in the registry: find or create them in PostgreSQL."""

from __future__ import annotations

from collections.abc import Collection

from shared.db import open_postgres
from shared.machines import Machine, MachineRepository
from shared.settings import PostgresSettings

SENSOR_TYPES = ("Temperature", "Pressure", "Speed")


def location_of(factory_id: str) -> str:
    return f"Simulator {factory_id}"


async def ensure_machines(
    settings: PostgresSettings, factory_id: str, count: int, made: list[str] | None = None
) -> list[Machine]:
    """``count`` machines registered for the simulated factory, reusing those from earlier runs;
    the ids of those it had to register are added to ``made`` (for :func:`remove_machines`)."""
    pool = await open_postgres(settings, "simulator")
    try:
        repo = MachineRepository(pool)
        location = location_of(factory_id)
        existing, _ = await repo.list({"location": location}, limit=count, offset=0)
        machines = list(existing)
        for i in range(len(machines), count):
            machine = await repo.create(
                f"SIM-{factory_id}-{i + 1:04d}",
                location,
                SENSOR_TYPES[i % len(SENSOR_TYPES)],
                "active",
                factory_id=factory_id,
            )
            machines.append(machine)
            if made is not None:
                made.append(machine.id)
        return machines
    finally:
        await pool.close()


async def remove_machines(settings: PostgresSettings, ids: Collection[str]) -> None:
    """Machines a run registered (``made`` of :func:`ensure_machines`) removed again, with the
    rules scoped to them and the alerts raised for them: nothing of the run is left on the
    console. Machines, then rules and alerts, so that no alert of a removed machine comes after.
    """
    if not ids:
        return
    machines = sorted(ids)
    pool = await open_postgres(settings, "simulator")
    try:
        async with pool.connection() as conn:
            await conn.execute(
                "DELETE FROM machine_metadata WHERE id = ANY(%s::uuid[])", (machines,)
            )
            await conn.execute(
                "DELETE FROM alert_rules WHERE scope_type = 'machine'"
                " AND scope_value = ANY(%s) AND managed_by IS NULL",
                (machines,),
            )
            await conn.execute(
                "DELETE FROM alert_deliveries WHERE alert_id IN"
                " (SELECT id FROM alerts WHERE machine_id = ANY(%s::uuid[]))",
                (machines,),
            )
            await conn.execute("DELETE FROM alerts WHERE machine_id = ANY(%s::uuid[])", (machines,))
    finally:
        await pool.close()
