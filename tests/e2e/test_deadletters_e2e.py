"""A reading for a machine nobody registered yet: dead-lettered, archived, replayed, stored.

MQTT (real ``mosquitto_pub``) → bridge → ``telemetry.dead`` → query_api's archive → the API and
the CLI (``python -m tools.deadletters``) → replay → writer → InfluxDB → history endpoint.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from shared.db import create_pool
from shared.settings import PostgresSettings
from tests.e2e import cleanup
from tests.e2e.pipeline import iso, poll, stored_history
from tests.mqtt_fixtures import mosquitto_pub, service_mqtt
from tests.paths import ROOT

pytestmark = pytest.mark.e2e
Headers = Callable[[str], dict[str, str]]


def cli(token: str, query_api: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MILLRACE_TOKEN": token, "QUERY_API_URL": query_api}
    return subprocess.run(
        [sys.executable, "-m", "tools.deadletters", *args, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def register(machine: str) -> None:
    """Register the machine under the id its gateway already uses, as a registry import would
    (the API assigns new ids, so it cannot)."""
    pool = create_pool(PostgresSettings(), "e2e")
    await pool.open(wait=True)
    try:
        cleanup.machine(machine)
        async with pool.connection() as conn:
            await conn.execute(
                "INSERT INTO machine_metadata (id, name, location, sensor_type)"
                " VALUES (%s, %s, 'Press shop, Line 9', 'Temperature')",
                (machine, f"Late-{machine[:8]}"),
            )
    finally:
        await pool.close()


def test_unknown_machine_reading_is_replayed_once_the_machine_exists(
    urls: dict[str, str], auth_headers: Headers, token_for: Callable[[str], str]
) -> None:
    machine = str(uuid.uuid4())
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    payload = orjson.dumps({"timestamp": iso(at), "temperature": 81.25, "speed": 1300})
    mosquitto_pub(service_mqtt(), f"factory/f1/machine/{machine}/telemetry", [payload])

    def letters() -> dict[str, Any]:
        resp = httpx.get(
            f"{urls['query_api']}/api/v1/deadletters",
            params={"reason": "unknown_machine", "machine_id": machine},
            headers=auth_headers("Management"),
        )
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    body = poll(letters, lambda b: b["pagination"]["total_records"] == 1, timeout=30)
    [letter] = body["dead_letters"]
    assert (letter["source"], letter["has_raw"]) == ("mqtt", True)
    assert letter["topic"] == f"factory/f1/machine/{machine}/telemetry"

    token = token_for("Management")
    shown = cli(token, urls["query_api"], "show", str(letter["id"]))
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout)["dead_letter"]["raw"] == payload.decode()

    # Still unknown: the replay refuses it and says why.
    refused = cli(token, urls["query_api"], "replay", "--ids", str(letter["id"]))
    assert refused.returncode == 3, refused.stderr
    [result] = orjson.loads(refused.stdout)["results"]
    assert (result["outcome"], result["reason"]) == ("still_invalid", "unknown_machine")

    asyncio.run(register(machine))
    replayed = cli(token, urls["query_api"], "replay", "--ids", str(letter["id"]))
    assert replayed.returncode == 0, replayed.stderr
    [result] = orjson.loads(replayed.stdout)["results"]
    assert (result["outcome"], result["readings"]) == ("replayed", 1)

    stored = stored_history(urls, auth_headers, machine, at, records=1)
    [row] = stored["data"]
    assert row["timestamp"] == iso(at)
    assert (row["temperature"], row["speed"]) == (81.25, 1300.0)
    assert letters()["dead_letters"][0]["replayed_at"] is not None
