"""Readiness probes shared by the services' ``/ready``: each answers True or False, never raises."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from shared.db import DB_PROBE_ERRORS
from shared.errors import InfluxUnavailable
from shared.influx import InfluxClient


async def postgres_ready(pool: AsyncConnectionPool) -> bool:
    try:
        async with pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
    except DB_PROBE_ERRORS:
        return False
    return True


async def influx_ready(influx: InfluxClient) -> bool:
    try:
        await influx.ping()
    except InfluxUnavailable:
        return False
    return True
