"""InfluxDB through the v1-compatible HTTP API: line protocol on ``/write``, InfluxQL on ``/query``.

InfluxDB 1.x, 2.x (with a token and DBRP mappings) and 3.x all serve it, so this one tested code
path runs against Debian's 1.6.7 in development and 2.7 in production (README "Production
with Docker").

influxdb-client's batching ``write_api`` reports failures only to a callback, so writes could
vanish; here every write either returns (stored) or raises, and the caller decides.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from shared.errors import InfluxQueryError, InfluxRejected, InfluxUnavailable
from shared.settings import InfluxSettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Series:
    name: str
    columns: list[str]
    values: list[list[Any]]
    tags: dict[str, str]

    def rows(self) -> list[dict[str, Any]]:
        cols = self.columns
        return [dict(zip(cols, v, strict=False)) for v in self.values]


def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def any_of(tag: str, values: list[str]) -> str:
    """``(tag = 'a' OR tag = 'b' ...)`` — InfluxQL has no IN."""
    return "(" + " OR ".join(f"{quote_ident(tag)} = {quote_literal(v)}" for v in values) + ")"


class InfluxClient:
    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        headers = {}
        if settings.token is not None:
            headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
        auth = None
        if settings.username and settings.password is not None:
            auth = httpx.BasicAuth(settings.username, settings.password.get_secret_value())
        self._http = httpx.AsyncClient(
            base_url=settings.url,
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 3.0)),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def ping(self) -> str:
        """Return the server version; raises :class:`InfluxUnavailable` when not answering."""
        try:
            resp = await self._http.get("/ping")
        except httpx.HTTPError as e:
            raise InfluxUnavailable(f"{type(e).__name__}: {e}") from e
        if resp.status_code != 204:
            raise InfluxUnavailable(f"/ping answered {resp.status_code}")
        return resp.headers.get("X-Influxdb-Version", "unknown")

    async def write(self, body: bytes, rp: str | None = None) -> None:
        """Write line protocol (ns precision). Returns only when InfluxDB accepted every point.

        Raises :class:`InfluxUnavailable` for anything worth retrying (network, timeout, 5xx,
        missing database while provisioning runs, auth misconfiguration) and
        :class:`InfluxRejected` when the body itself is refused (4xx: malformed point, field
        type conflict, partial write) — retrying that same body can never succeed.
        """
        params = {"db": self.settings.database, "precision": "ns"}
        params["rp"] = rp or self.settings.raw_rp
        try:
            resp = await self._http.post("/write", params=params, content=body)
        except httpx.HTTPError as e:
            raise InfluxUnavailable(f"{type(e).__name__}: {e}") from e
        if resp.status_code == 204:
            return
        detail = _error_text(resp)
        if resp.status_code in (400, 413, 422) and "database not found" not in detail:
            raise InfluxRejected(resp.status_code, detail)
        raise InfluxUnavailable(f"/write answered {resp.status_code}: {detail}")

    async def query(self, statement: str, *, write: bool = False) -> list[list[Series]]:
        """Run InfluxQL; one list of series per statement. Times come back as ns integers."""
        params = {"db": self.settings.database, "q": statement, "epoch": "ns"}
        try:
            if write:
                resp = await self._http.post("/query", data=params)
            else:
                resp = await self._http.get("/query", params=params)
        except httpx.HTTPError as e:
            raise InfluxUnavailable(f"{type(e).__name__}: {e}") from e
        if resp.status_code >= 500:
            raise InfluxUnavailable(f"/query answered {resp.status_code}: {_error_text(resp)}")
        try:
            doc = orjson.loads(resp.content)
        except orjson.JSONDecodeError as e:
            raise InfluxQueryError(f"/query answered {resp.status_code} non-JSON") from e
        if "error" in doc:
            raise _query_error(doc["error"])
        out: list[list[Series]] = []
        for result in doc.get("results", []):
            if "error" in result:
                raise _query_error(result["error"])
            out.append(
                [
                    Series(
                        s.get("name", ""),
                        s.get("columns", []),
                        s.get("values", []),
                        s.get("tags", {}) or {},
                    )
                    for s in result.get("series", [])
                ]
            )
        return out

    async def provision(self) -> None:
        """Create the database and one retention policy per tier (InfluxDB 1.x).

        On 2.x/3.x the v1 API cannot create databases; compose provisions buckets and DBRP
        mappings instead (``infra/influxdb/provision_v2.py``), so this only checks the version.
        """
        version = await self.ping()
        if not version.lstrip("v").startswith("1."):
            log.info("InfluxDB %s: buckets are provisioned outside the services", version)
            return
        s = self.settings
        db = quote_ident(s.database)
        await self.query(f"CREATE DATABASE {db}", write=True)
        tiers = [
            (s.raw_rp, s.raw_retention, True),
            (s.hourly_rp, s.hourly_retention, False),
            (s.daily_rp, s.daily_retention, False),
        ]
        for rp, duration, default in tiers:
            suffix = " DEFAULT" if default else ""
            try:
                await self.query(
                    f"CREATE RETENTION POLICY {quote_ident(rp)} ON {db} "
                    f"DURATION {duration} REPLICATION 1{suffix}",
                    write=True,
                )
            except InfluxQueryError as e:
                if "already exists" not in str(e):
                    raise
                # Same name, different duration: the operator changed the setting.
                await self.query(
                    f"ALTER RETENTION POLICY {quote_ident(rp)} ON {db} DURATION {duration}{suffix}",
                    write=True,
                )
        log.info("InfluxDB %s provisioned: database %s, tiers %s", version, s.database, tiers)


def _query_error(detail: str) -> InfluxQueryError | InfluxUnavailable:
    """A missing database is not a bad statement: the writer creates it when it starts, so the
    caller should retry (503), not report a bug of ours (500)."""
    if "database not found" in detail:
        return InfluxUnavailable(f"{detail} (the writer creates it when it starts)")
    return InfluxQueryError(detail)


def _error_text(resp: httpx.Response) -> str:
    try:
        doc = orjson.loads(resp.content)
        if isinstance(doc, dict) and "error" in doc:
            return str(doc["error"])
    except orjson.JSONDecodeError:
        pass
    return resp.text[:500]
