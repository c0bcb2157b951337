"""Factories as a scope, with the running pipeline: a gateway registered through the admin CLI
for one factory writes for that factory's machines only; sign-ins passed on by the console are
counted against the browser's address, not the console's."""

from __future__ import annotations

import secrets
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from shared.settings import PostgresSettings
from tests.e2e import cleanup
from tests.e2e.pipeline import Headers, iso, stored_history

pytestmark = pytest.mark.e2e


def create_machine(urls: dict[str, str], auth_headers: Headers, factory: str) -> str:
    resp = cleanup.created(
        httpx.post(
            f"{urls['query_api']}/api/v1/machines",
            json={
                "name": f"CNC-{uuid.uuid4().hex[:6]}",
                "location": "Scope hall",
                "sensor_type": "Temperature",
                "factory_id": factory,
            },
            headers=auth_headers("Management"),
        )
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["machine"]["id"])


def gateway_token(urls: dict[str, str], gateway_id: str, factory: str) -> str:
    """A gateway of ``factory`` registered with the admin CLI, and its client-credentials token."""
    cleanup.gateway(gateway_id)
    done = subprocess.run(
        [sys.executable, "-m", "services.auth", "create-gateway", gateway_id, "--factory", factory],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = dict(
        (key.strip(), value.strip())
        for key, value in (line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    )
    assert printed["factory"] == factory
    resp = httpx.post(
        f"{urls['auth']}/api/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": printed["client_id"],
            "client_secret": printed["client_secret"],
        },
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def batch(start: datetime, *machines: str) -> dict[str, Any]:
    return {
        "batch": [
            {
                "machine_id": m,
                "readings": [{"timestamp": iso(start), "temperature": 61.5}],
            }
            for m in machines
        ]
    }


def test_a_gateway_writes_for_its_own_factorys_machines_only(
    urls: dict[str, str], auth_headers: Headers
) -> None:
    a, b = (f"e2e-scope-{uuid.uuid4().hex[:6]}" for _ in range(2))
    own, foreign = create_machine(urls, auth_headers, a), create_machine(urls, auth_headers, b)
    token = gateway_token(urls, f"GW-{uuid.uuid4().hex[:8]}", a)
    headers = {"Authorization": f"Bearer {token}"}
    ingest = f"{urls['ingest_gateway']}/api/v1/data/ingest"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)

    refused = httpx.post(ingest, json=batch(start, foreign), headers=headers)
    assert refused.status_code == 403, refused.text
    assert foreign in refused.json()["message"]
    assert refused.json()["rejected"][0]["reason"] == "out of scope"

    # Body ids claiming the other factory change nothing: the credential and registry decide.
    mixed = batch(start, own, foreign) | {"gateway_id": "GW-SPOOF", "factory_id": b}
    partial = httpx.post(ingest, json=mixed, headers=headers)
    assert partial.status_code == 207, partial.text
    assert [r["machine_id"] for r in partial.json()["rejected"]] == [foreign]
    assert partial.json()["accepted"]["machines"] == 1

    stored = stored_history(urls, auth_headers, own, start, records=1)
    assert stored["data"][0]["temperature"] == 61.5
    # Published in the same message had it been accepted: nothing stored for the other machine.
    assert stored_history(urls, auth_headers, foreign, start, records=0)["data"] == []


def fresh_address() -> str:
    return "10." + ".".join(str(b) for b in secrets.token_bytes(3))


def test_the_console_passes_on_the_browsers_address_to_auth(
    urls: dict[str, str], auth_headers: Headers
) -> None:
    """Auth counts failed sign-ins per address (the volume cases are in
    tests/integration/test_auth_throttle.py, with cheap hashing): behind the console, that must
    be the browser's address, not the console's."""
    username, password = f"e2e-nat-{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(16)
    made = cleanup.created(
        httpx.post(
            f"{urls['auth']}/api/v1/auth/users",
            json={"username": username, "password": password, "role": "Operator"},
            headers=auth_headers("Management"),
            timeout=30,
        )
    )
    assert made.status_code == 201, made.text
    browser = fresh_address()
    # The test runs on the console's host, a proxy query_api trusts (uvicorn's
    # FORWARDED_ALLOW_IPS, loopback): its X-Forwarded-For plays the browser's address.
    signed_in = httpx.post(
        f"{urls['query_api']}/console/auth/login",
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": browser},
        timeout=30,
    )
    assert signed_in.status_code == 200, signed_in.text
    with psycopg.connect(PostgresSettings().url.get_secret_value()) as conn:
        recorded = conn.execute(
            "SELECT f.client_address FROM refresh_token_families f JOIN users u"
            " ON u.id = f.user_id WHERE u.username = %s",
            (username,),
        ).fetchall()
    assert recorded == [(browser,)]
