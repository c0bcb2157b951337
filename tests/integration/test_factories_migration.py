"""The factory-scope schema: machines, users and gateways carry their factory columns, and rows
that existed before the migration join the default factory."""

from __future__ import annotations

import psycopg
import pytest

from shared.db import create_pool, migrate
from shared.settings import IngestLimits, PostgresSettings

pytestmark = pytest.mark.integration


async def test_the_factory_columns_exist_with_their_defaults(
    postgres_settings: PostgresSettings,
) -> None:
    pool = create_pool(postgres_settings, "test-migration")
    await pool.open(wait=True)
    try:
        await migrate(pool)
    finally:
        await pool.close()
    url = postgres_settings.url.get_secret_value()
    with psycopg.connect(url, connect_timeout=3) as conn:
        columns = {
            (table, column): (data_type, nullable, default)
            for table, column, data_type, nullable, default in conn.execute(
                "SELECT table_name, column_name, udt_name, is_nullable, column_default"
                " FROM information_schema.columns"
                " WHERE (table_name, column_name) IN (('machine_metadata', 'factory_id'),"
                " ('users', 'factories'), ('gateway_clients', 'factory_id'),"
                " ('gateway_clients', 'machine_ids'))"
            ).fetchall()
        }
        default = f"'{IngestLimits().default_factory_id}'::character varying"
        assert columns == {
            ("machine_metadata", "factory_id"): ("varchar", "NO", default),
            ("users", "factories"): ("_text", "YES", None),
            ("gateway_clients", "factory_id"): ("varchar", "NO", default),
            ("gateway_clients", "machine_ids"): ("_uuid", "YES", None),
        }
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT indexdef FROM pg_indexes"
                " WHERE tablename IN ('machine_metadata', 'gateway_clients')"
            ).fetchall()
        }
        assert any("(factory_id)" in i and "machine_metadata" in i for i in indexes)
        # A machine registered the way it was before factories existed joins the default one.
        row = conn.execute(
            "INSERT INTO machine_metadata (name, location, sensor_type)"
            " VALUES ('pre-factory', 'hall', 'temperature') RETURNING factory_id"
        ).fetchone()
        conn.rollback()
        assert row == ("default",)
