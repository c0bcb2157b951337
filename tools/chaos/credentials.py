"""The HTTP gateway's identity: credentials registered with the auth CLI, exchanged for
short-lived tokens (OAuth2 client credentials), renewed before they expire.

A token is renewed at half its lifetime; when the auth service cannot issue one (PostgreSQL
down), the current token is used for as long as it stays valid.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx

from shared.errors import MillraceError
from tools.chaos.pipeline import ROOT
from tools.common.auth import TOKEN_PATH


class TokenUnavailable(MillraceError, RuntimeError):
    """No valid token, and the auth service cannot issue one right now."""


def register_gateway(gateway_id: str, factory_id: str) -> tuple[str, str]:
    """(client id, client secret) from ``python -m services.auth create-gateway``."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.auth",
            "create-gateway",
            gateway_id,
            "--factory",
            factory_id,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"create-gateway {gateway_id} failed: {result.stderr.strip()}")
    found = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(":")
        found[key.strip()] = value.strip()
    return found["client_id"], found["client_secret"]


class GatewayToken:
    def __init__(self, auth_url: str, client_id: str, client_secret: str) -> None:
        self.auth_url = auth_url
        self.client_id = client_id
        self.client_secret = client_secret
        self._token: str | None = None
        self._renew_at = 0.0
        self._expires_at = 0.0
        self._next_try = 0.0
        self._lock = threading.Lock()

    def header(self) -> dict[str, str]:
        with self._lock:
            now = time.monotonic()
            if (self._token is None or now >= self._renew_at) and now >= self._next_try:
                try:
                    self._fetch()
                except (httpx.HTTPError, TokenUnavailable):
                    self._next_try = now + 2.0
            if self._token is None or time.monotonic() >= self._expires_at - 30:
                raise TokenUnavailable("the auth service cannot issue a gateway token now")
            return {"authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _fetch(self) -> None:
        resp = httpx.post(
            f"{self.auth_url}{TOKEN_PATH}",
            json={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            },
            timeout=10.0,
        )
        if resp.status_code != 200:
            raise TokenUnavailable(f"{TOKEN_PATH} answered {resp.status_code}: {resp.text[:200]}")
        doc = resp.json()
        now = time.monotonic()
        self._token = doc["access_token"]
        self._renew_at = now + doc["expires_in"] / 2
        self._expires_at = now + doc["expires_in"]
