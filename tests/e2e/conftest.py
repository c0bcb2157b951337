"""The running pipeline (``make up``): real processes, real tokens from the auth service."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import service_url

SERVICES = {
    "ingest_gateway": 8001,
    "query_api": 8002,
    "auth": 8003,
    "writer": 8005,
}


@pytest.fixture(scope="session")
def urls() -> dict[str, str]:
    out = {name: service_url(name, port) for name, port in SERVICES.items()}
    for name, url in out.items():
        try:
            ok = httpx.get(f"{url}/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            pytest.fail(f"{name} is not ready at {url}: run `make up` first")
    return out


def create_user(role: str) -> tuple[str, str]:
    """A new user through the admin CLI, exactly as an operator would create one."""
    username = f"e2e-{role.lower()}-{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(16)
    result = subprocess.run(
        [sys.executable, "-m", "services.auth", "create-user", username, "--role", role],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return username, password


@pytest.fixture(scope="session")
def token_for(urls: dict[str, str]) -> Callable[[str], str]:
    cache: dict[str, str] = {}

    def get(role: str) -> str:
        if role not in cache:
            username, password = create_user(role)
            resp = httpx.post(
                f"{urls['auth']}/api/v1/auth/login",
                json={"username": username, "password": password},
                timeout=10,
            )
            assert resp.status_code == 200, resp.text
            cache[role] = resp.json()["access_token"]
        return cache[role]

    return get


@pytest.fixture(scope="session")
def auth_headers(token_for: Callable[[str], str]) -> Callable[[str], dict[str, str]]:
    return lambda role: {"Authorization": f"Bearer {token_for(role)}"}


def poll(fetch: Callable[[], Any], until: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    """Call ``fetch`` until ``until(result)`` holds; fail with the last result at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached before the deadline; last result: {result!r}")
        time.sleep(0.1)
