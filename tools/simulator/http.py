"""A gateway's HTTP side: ``POST /api/v1/data/ingest`` with a bearer token.

The token needs ``write:sensor_data`` (a gateway token from the auth service, or an Operator's).
503 answers are retried after their ``Retry-After``: nothing was accepted, so nothing is doubled.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import httpx
import orjson

log = logging.getLogger(__name__)
INGEST_PATH = "/api/v1/data/ingest"


class AuthRequired(RuntimeError):
    """The ingest gateway refused the credentials (401/403)."""


class HttpPublisher:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8001",
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        max_attempts: int = 10,
    ) -> None:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)
        self.max_attempts = max_attempts
        self.statuses: Counter[int] = Counter()
        self.readings_accepted = 0

    def post(self, batch: dict[str, Any]) -> httpx.Response:
        """Send one batch; retry 503/connection errors; raise :class:`AuthRequired` on 401/403."""
        body = orjson.dumps(batch)
        for attempt in range(1, self.max_attempts + 1):
            try:
                resp = self._client.post(INGEST_PATH, content=body)
            except httpx.TransportError as e:
                if attempt == self.max_attempts:
                    raise
                log.warning("ingest gateway unreachable (%s); retrying", e)
                time.sleep(min(2**attempt * 0.1, 5))
                continue
            self.statuses[resp.status_code] += 1
            if resp.status_code in (401, 403):
                raise AuthRequired(
                    f"ingest gateway answered {resp.status_code}: a bearer token with"
                    " write:sensor_data is needed (--token or MILLRACE_TOKEN)"
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
