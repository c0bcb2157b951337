"""A gateway's HTTP side: ``POST /api/v1/data/ingest`` with a bearer token.

The token needs ``write:sensor_data``: either given as is (``--token``/``MILLRACE_TOKEN``), or
obtained the way a real gateway does, by exchanging its client credentials at the auth service
(``POST /api/v1/auth/token``, client-credentials grant) and again whenever it expires.
503 answers are retried after their ``Retry-After``: nothing was accepted, so nothing is doubled.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import httpx
import orjson

from shared.errors import MillraceError
from tools.common.auth import TOKEN_PATH

log = logging.getLogger(__name__)
INGEST_PATH = "/api/v1/data/ingest"


class AuthRequired(MillraceError, RuntimeError):
    """The ingest gateway refused the credentials (401/403)."""


class ClientCredentials:
    """A gateway's client id and secret, exchanged for short-lived tokens."""

    def __init__(self, auth_url: str, client_id: str, client_secret: str) -> None:
        self.auth_url = auth_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret

    def fetch(self, client: httpx.Client) -> str:
        resp = client.post(
            f"{self.auth_url}{TOKEN_PATH}",
            data={"grant_type": "client_credentials"},
            auth=(self.client_id, self.client_secret),
        )
        if resp.status_code != 200:
            raise AuthRequired(f"auth refused the gateway credentials ({resp.status_code})")
        return str(resp.json()["access_token"])


class HttpPublisher:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8001",
        *,
        token: str | None = None,
        credentials: ClientCredentials | None = None,
        timeout_s: float = 30.0,
        max_attempts: int = 10,
    ) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=timeout_s)
        self._credentials = credentials
        if token is None and credentials is not None:
            token = credentials.fetch(self._client)
        self._set_token(token)
        self.max_attempts = max_attempts
        self.statuses: Counter[int] = Counter()
        self.readings_accepted = 0

    def _set_token(self, token: str | None) -> None:
        if token:
            self._client.headers["authorization"] = f"Bearer {token}"

    def post(self, batch: dict[str, Any]) -> httpx.Response:
        """Send one batch; retry 503/connection errors; raise :class:`AuthRequired` on 401/403."""
        body = orjson.dumps(batch)
        refreshed = False
        for attempt in range(1, self.max_attempts + 1):
            try:
                resp = self._client.post(
                    INGEST_PATH, content=body, headers={"content-type": "application/json"}
                )
            except httpx.TransportError as e:
                if attempt == self.max_attempts:
                    raise
                log.warning("ingest gateway unreachable (%s); retrying", e)
                time.sleep(min(2**attempt * 0.1, 5))
                continue
            if resp.status_code == 401 and self._credentials is not None and not refreshed:
                self._set_token(self._credentials.fetch(self._client))  # expired: a new one
                refreshed = True
                continue
            self.statuses[resp.status_code] += 1
            if resp.status_code in (401, 403):
                raise AuthRequired(
                    f"ingest gateway answered {resp.status_code}: a bearer token with"
                    " write:sensor_data is needed (--token, or --client-id/--client-secret)"
                )
            if resp.status_code == 503 and attempt < self.max_attempts:
                wait = float(resp.headers.get("retry-after", "1"))
                log.warning("ingest gateway busy (503); retrying in %.0f s", wait)
                time.sleep(wait)
                continue
            if resp.status_code in (202, 207):
                self.readings_accepted += int(resp.json()["accepted"]["readings"])
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._client.close()
