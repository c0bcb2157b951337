"""Helpers of the end-to-end tests: where the running pipeline's services answer, users made
through the admin CLI with tokens that stay fresh, and polling with a deadline. Fixtures built on
them are in ``tests/e2e/conftest.py``."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e import cleanup
from tests.logscan import remember
from tests.polling import poll

Headers = Callable[[str], dict[str, str]]  # the auth_headers fixture: role → headers
SERVICES = {
    "ingest_gateway": 8001,
    "query_api": 8002,
    "auth": 8003,
    "writer": 8005,
}


def service_url(name: str, default_port: int) -> str:
    port = os.environ.get(f"{name.upper()}_PORT", str(default_port))
    return os.environ.get(f"{name.upper()}_URL", f"http://127.0.0.1:{port}")


def ready_url(name: str, default_port: int) -> str:
    """The running service's URL (:func:`service_url`); the test fails, saying why, unless the
    service answers ``/ready``."""
    url = service_url(name, default_port)
    try:
        status = httpx.get(f"{url}/ready", timeout=5).status_code
    except httpx.HTTPError as e:
        pytest.fail(f"{name} is not ready at {url} ({e}): run `make up` first")
    if status != 200:
        pytest.fail(f"{name} is not ready at {url} (/ready answered {status}): run `make up` first")
    return url


def create_user(role: str, factories: tuple[str, ...] = ()) -> tuple[str, str]:
    """A new ``role`` user of ``factories`` (none: every factory) through the admin CLI, exactly
    as an operator would create one (removed when the run ends)."""
    username = cleanup.user(f"e2e-{role.lower()}-{uuid.uuid4().hex[:8]}")
    password = remember(secrets.token_urlsafe(16))
    scope = [arg for factory in factories for arg in ("--factory", factory)]
    result = subprocess.run(
        [sys.executable, "-m", "services.auth", "create-user", username, "--role", role, *scope],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return username, password


# A token handed to a test must outlive it (pytest-timeout stops a test after 120 s, the longest
# e2e test after 390 s): renewed once less than this is left of its life.
FRESH_FOR_S = 600.0


@dataclass
class _Session:
    username: str
    password: str
    token: str = ""
    expires_at: float = 0.0  # time.monotonic()


class Tokens:
    """One user per role for the whole run (created once through the admin CLI); its access
    token is renewed by logging in again whenever it has less than ``FRESH_FOR_S`` to live, so a
    test late in a long run never gets one about to expire (tokens live 15 minutes)."""

    def __init__(self, auth_url: str) -> None:
        self.auth_url = auth_url
        self._sessions: dict[tuple[str, ...], _Session] = {}

    def __call__(self, role: str, *factories: str) -> str:
        """A token of the run's ``role`` user of ``factories`` (none given: every factory)."""
        key = (role, *sorted(factories))
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = _Session(*create_user(role, key[1:]))
        if session.expires_at - time.monotonic() < FRESH_FOR_S:
            asked_at = time.monotonic()
            resp = httpx.post(
                f"{self.auth_url}/api/v1/auth/login",
                json={"username": session.username, "password": session.password},
                timeout=10,
            )
            assert resp.status_code == 200, resp.text
            body = resp.json()
            session.token = body["access_token"]
            session.expires_at = asked_at + float(body["expires_in"])
        return session.token


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def create_machine(
    urls: dict[str, str],
    auth_headers: Headers,
    location: str,
    name: str | None = None,
    factory_id: str | None = None,
) -> str:
    """A Temperature machine registered by a Supervisor (named ``CNC-<random>`` unless ``name``;
    in the default factory unless ``factory_id``); its id. Removed when the run ends."""
    body = {
        "name": name or f"CNC-{uuid.uuid4().hex[:6]}",
        "location": location,
        "sensor_type": "Temperature",
    }
    if factory_id:
        body["factory_id"] = factory_id
    resp = cleanup.created(
        httpx.post(
            f"{urls['query_api']}/api/v1/machines",
            json=body,
            headers=auth_headers("Supervisor"),
            timeout=10,
        )
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["machine"]["id"])


def history(
    urls: dict[str, str], auth_headers: Headers, machine: str, start: datetime, **params: Any
) -> httpx.Response:
    return httpx.get(
        f"{urls['query_api']}/api/v1/data/machine/{machine}",
        params={
            "start_time": iso(start - timedelta(seconds=1)),
            "end_time": iso(start + timedelta(hours=1)),
            **params,
        },
        headers=auth_headers("Operator"),
    )


def stored_history(
    urls: dict[str, str], auth_headers: Headers, machine: str, start: datetime, *, records: int
) -> dict[str, Any]:
    """The machine's raw history from ``start`` once the query API serves ``records`` readings
    (polled for 30 s)."""
    answer = poll(
        lambda: history(urls, auth_headers, machine, start),
        lambda r: r.status_code == 200 and r.json()["pagination"]["total_records"] == records,
        timeout=30,
    )
    return dict(answer.json())
