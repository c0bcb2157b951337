"""Users of some factories for the end-to-end tests: made through the admin CLI
(``create-user --factory``), signed in through auth, their tokens renewed before they age."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import uuid

import httpx

from tests.e2e.pipeline import FRESH_FOR_S
from tests.logscan import remember


def create_user(role: str, factories: tuple[str, ...]) -> tuple[str, str]:
    """A new ``role`` user of ``factories`` (none: every factory) through the admin CLI."""
    username = f"e2e-{role.lower()}-{uuid.uuid4().hex[:8]}"
    password = remember(secrets.token_urlsafe(16))
    scope = [arg for f in factories for arg in ("--factory", f)]
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


class FactoryUsers:
    """``users(role, *factories)``: headers of a user with that role and scope (one user per
    role and scope, signed in again when its token has less than ``FRESH_FOR_S`` to live)."""

    def __init__(self, auth_url: str) -> None:
        self.auth_url = auth_url
        self._accounts: dict[tuple[str, tuple[str, ...]], tuple[str, str]] = {}
        self._tokens: dict[tuple[str, tuple[str, ...]], tuple[str, float]] = {}

    def __call__(self, role: str, *factories: str) -> dict[str, str]:
        key = (role, tuple(sorted(factories)))
        if key not in self._accounts:
            self._accounts[key] = create_user(role, key[1])
        token, expires_at = self._tokens.get(key, ("", 0.0))
        if expires_at - time.monotonic() < FRESH_FOR_S:
            username, password = self._accounts[key]
            asked_at = time.monotonic()
            resp = httpx.post(
                f"{self.auth_url}/api/v1/auth/login",
                json={"username": username, "password": password},
                timeout=10,
            )
            assert resp.status_code == 200, resp.text
            token = resp.json()["access_token"]
            self._tokens[key] = (token, asked_at + float(resp.json()["expires_in"]))
        return {"Authorization": f"Bearer {token}"}
