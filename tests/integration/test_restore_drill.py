"""The restore drill (docs/production.md, "Backup and restore"): fill a scratch PostgreSQL database
and a scratch InfluxDB database, back both up with `python -m tools.backup`, destroy them,
restore, and find every row and every reading of every tier back. Scratch databases only, on the
real servers: the pipeline's own databases are never touched."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from shared.db import migrate, open_postgres
from shared.lineprotocol import MEASUREMENT, line
from shared.settings import InfluxSettings, PostgresSettings
from tests.paths import ROOT

pytestmark = pytest.mark.integration

TIERS = {"raw": "52w", "hourly": "104w", "daily": "260w"}
MACHINES = [str(uuid.uuid4()) for _ in range(3)]
NS = 1_000_000_000


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def create_database(admin_url: str, name: str) -> None:
    """CREATE DATABASE, owned by the services' role. That role may not create databases (make up
    does not give it CREATEDB): then the local superuser creates it, as infra/local/deps.sh
    provisions the role's own databases (root on the machine running PostgreSQL)."""
    role = urlsplit(admin_url).username
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return
    except psycopg.errors.InsufficientPrivilege:
        pass
    parts = urlsplit(admin_url)
    runuser = shutil.which("runuser")
    if not (os.geteuid() == 0 and runuser and parts.hostname in ("127.0.0.1", "localhost")):
        pytest.fail(f"{role} may not create databases and no local superuser is at hand")
    done = subprocess.run(
        [runuser, "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
         "-p", str(parts.port or 5432), "-d", "postgres",
         "-c", f'CREATE DATABASE "{name}" OWNER "{role}"'],
        capture_output=True, text=True, cwd="/", timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture
def scratch_postgres(postgres_settings: PostgresSettings) -> Iterator[str]:
    """An empty database beside the pipeline's, dropped afterwards."""
    admin = postgres_settings.url.get_secret_value()
    name = f"millrace_drill_{uuid.uuid4().hex[:12]}"
    create_database(admin, name)
    try:
        yield _with_database(admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Influx:
    def __init__(self, settings: InfluxSettings, database: str) -> None:
        auth = None
        if settings.username and settings.password:
            auth = (settings.username, settings.password.get_secret_value())
        headers = {}
        if settings.token:
            headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
        self.client = httpx.Client(base_url=settings.url, auth=auth, headers=headers, timeout=30)
        self.database = database

    def query(self, q: str, *, write: bool = False) -> list[dict[str, Any]]:
        params = {"q": q, "db": self.database, "epoch": "ns"}
        r = (
            self.client.post("/query", params=params)
            if write
            else self.client.get("/query", params=params)
        )
        r.raise_for_status()
        results: list[dict[str, Any]] = r.json()["results"]
        for result in results:
            assert "error" not in result, result
        return results

    def write(self, rp: str, lines: list[str]) -> None:
        r = self.client.post(
            "/write", params={"db": self.database, "rp": rp}, content="\n".join(lines)
        )
        assert r.status_code == 204, r.text


@pytest.fixture
def scratch_influx(influx_settings: InfluxSettings) -> Iterator[Influx]:
    name = f"millrace_drill_{uuid.uuid4().hex[:12]}"
    influx = Influx(influx_settings, name)
    try:
        yield influx
    finally:
        influx.query(f'DROP DATABASE "{name}"', write=True)
        influx.client.close()


# ------------------------------------------------------------------ filling


def fill_postgres(url: str) -> None:
    """The schema the services apply at start-up, and rows in the tables of record."""

    async def schema() -> None:
        pool = await open_postgres(PostgresSettings(url=url), "restore-drill")
        try:
            await migrate(pool)
        finally:
            await pool.close()

    # In a thread of its own: the suite may hold an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, schema()).result()
    with psycopg.connect(url) as conn:
        for i, machine in enumerate(MACHINES):
            conn.execute(
                "INSERT INTO machine_metadata (id, name, location, sensor_type, status)"
                " VALUES (%s, %s, %s, %s, %s)",
                (machine, f"CNC-{i:02}", "Floor 1", "Temperature", "active"),
            )
        for role in ("Operator", "Supervisor", "Management"):
            conn.execute(
                "INSERT INTO users (username, email, password_hash, role) VALUES (%s, %s, %s, %s)",
                (f"drill-{role.lower()}", f"{role.lower()}@example.com", "$argon2id$x", role),
            )
        conn.execute(
            "INSERT INTO gateway_clients (gateway_id, client_id, secret_hash, created_by)"
            " VALUES ('GW-01', 'client-drill', '$argon2id$y', 'drill')"
        )
        conn.execute(
            "INSERT INTO config_settings (name, value, updated_by, updated_by_username)"
            " VALUES ('max_temperature_threshold', '85.5', 'u1', 'drill-management')"
        )
        for n in range(5):
            conn.execute(
                "INSERT INTO audit_log (actor_id, actor_username, actor_role, action, target,"
                " old_value, new_value) VALUES ('u1', 'drill-management', 'Management',"
                " 'config.update', 'max_temperature_threshold', %s, %s)",
                (json.dumps(n), json.dumps(n + 1)),
            )
        conn.execute(
            "INSERT INTO dead_letters (message_id, reason, source, first_seen, readings)"
            " VALUES ('m-1', 'unknown_machine', 'mqtt', now(), '[{\"temperature\": 1}]')"
        )


def fill_influx(influx: Influx) -> int:
    raw, rest = next(iter(TIERS.items())), list(TIERS.items())[1:]
    influx.query(
        f'CREATE DATABASE "{influx.database}" WITH DURATION {raw[1]} NAME "{raw[0]}"', write=True
    )
    for rp, duration in rest:
        influx.query(
            f'CREATE RETENTION POLICY "{rp}" ON "{influx.database}" DURATION {duration}'
            " REPLICATION 1",
            write=True,
        )
    now_s = int(time.time()) - 3600
    points = 0
    for m, machine in enumerate(MACHINES):
        tags = {"machine_id": machine, "factory_id": "plant-1", "sensor_type": "Temperature"}
        raw_lines = [
            line(
                MEASUREMENT,
                tags,
                {"temperature": 20.0 + m + i / 100, "pressure": 101.3, "speed": 1400.0 + i},
                (now_s + i) * NS + m,
            )
            for i in range(400)
        ]
        influx.write("raw", raw_lines)
        points += len(raw_lines)
        # A rolled-up tier: 24 hourly points (means 22.5...), 7 daily ones (means 23.0...).
        for rp, mean, step, count in (("hourly", 21.5, 3600, 24), ("daily", 22.0, 86400, 7)):
            tier = [
                line(
                    MEASUREMENT,
                    tags,
                    {"mean_temperature": mean + k, "count_temperature": float(step)},
                    (now_s - now_s % step - step * k) * NS,
                )
                for k in range(1, count + 1)
            ]
            influx.write(rp, tier)
            points += len(tier)
    return points


# ------------------------------------------------------------------ what is there


def postgres_contents(url: str) -> dict[str, Any]:
    """Every table's rows (as text, sorted, hashed) and every sequence's position."""
    contents: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        for table in tables:
            row = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
                f' FROM "{table}" t'
            ).fetchone()
            contents[table] = row
        contents["sequences"] = conn.execute(
            "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'"
            " ORDER BY 1"
        ).fetchall()
    return contents


def influx_contents(influx: Influx) -> dict[str, Any]:
    contents: dict[str, Any] = {
        "retention": influx.query("SHOW RETENTION POLICIES")[0]["series"][0]["values"]
    }
    for rp in TIERS:
        [result] = influx.query(f'SELECT * FROM "{rp}"."{MEASUREMENT}" GROUP BY *')
        contents[rp] = sorted(
            (json.dumps(s["tags"], sort_keys=True), v)
            for s in result["series"]
            for v in s["values"]
        )
    return contents


def run_tool(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.backup", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


# ------------------------------------------------------------------ the drill


def test_backup_destroy_restore_brings_every_row_and_reading_back(
    scratch_postgres: str,
    scratch_influx: Influx,
    postgres_settings: PostgresSettings,
    tmp_path: Path,
) -> None:
    fill_postgres(scratch_postgres)
    points = fill_influx(scratch_influx)
    pg_before = postgres_contents(scratch_postgres)
    influx_before = influx_contents(scratch_influx)
    assert pg_before["machine_metadata"][0] == len(MACHINES)
    assert pg_before["audit_log"][0] == 5
    assert sum(len(influx_before[rp]) for rp in TIERS) == points

    env = {"POSTGRES_URL": scratch_postgres, "INFLUX_DATABASE": scratch_influx.database}
    backup_dir = tmp_path / "backup"
    made = run_tool("backup", str(backup_dir), env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["influxdb"]["database"] == scratch_influx.database
    checked = run_tool("verify", str(backup_dir), env=env)
    assert checked.returncode == 0, checked.stderr

    # Destroy: both databases gone, PostgreSQL's recreated empty.
    admin = postgres_settings.url.get_secret_value()  # the tests' database, not the scratch one
    name = urlsplit(scratch_postgres).path.lstrip("/")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    create_database(admin, name)
    scratch_influx.query(f'DROP DATABASE "{scratch_influx.database}"', write=True)
    assert postgres_contents(scratch_postgres) == {"sequences": []}
    databases = scratch_influx.query("SHOW DATABASES")[0]["series"][0]["values"]
    assert [scratch_influx.database] not in databases

    restored = run_tool("restore", str(backup_dir), env=env)
    assert restored.returncode == 0, restored.stderr

    assert postgres_contents(scratch_postgres) == pg_before
    assert influx_contents(scratch_influx) == influx_before


def test_restore_refuses_a_folder_that_is_not_a_backup(tmp_path: Path) -> None:
    done = run_tool("verify", str(tmp_path), env={})
    assert done.returncode == 1
    assert "not a backup made by this tool" in done.stderr


def test_backup_refuses_a_folder_that_already_holds_one(
    scratch_postgres: str, tmp_path: Path
) -> None:
    (tmp_path / "something").write_text("x")
    done = run_tool("backup", str(tmp_path), env={"POSTGRES_URL": scratch_postgres})
    assert done.returncode == 1
    assert "is not empty" in done.stderr
