"""Ingest → queryable: how long after a gateway sends a reading a dashboard can read it.

While background load runs, a probe machine gets one reading at a time over HTTP; the clock
starts when the request is sent and stops when the query API's raw history of that machine
returns the reading (polled every few ms, through auth and the history cache like a dashboard).
The floor beside it: the same wait for a point written straight to InfluxDB and read back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from shared.settings import InfluxSettings
from shared.timefmt import ns_to_iso
from tools.bench.stack import url

POLL_S = 0.005
PROBE_FACTORY = "bench-probe"
FLOOR_FACTORY = "bench-floor"


def _iso(ns: int) -> str:
    # Always six digits of microseconds, so that every probe's timestamp has the same length.
    return f"{ns_to_iso(ns - ns % 1_000_000_000)[:-1]}.{ns % 10**9 // 1000:06d}Z"


@dataclass(slots=True)
class Probes:
    api_ms: list[float] = field(default_factory=list)
    influx_ms: list[float] = field(default_factory=list)
    failures: int = 0


async def _visible(
    poll: httpx.AsyncClient,
    get: str,
    deadline: float,
    check: object,
    headers: dict[str, str] | None = None,
) -> bool:
    while time.perf_counter() < deadline:
        resp = await poll.get(get, headers=headers)
        if resp.status_code == 200 and check(resp.content):  # type: ignore[operator]
            return True
        await asyncio.sleep(POLL_S)  # queryable has no notification: poll, as a dashboard would
    return False


async def probe_api(client: httpx.AsyncClient, token: str, machine_id: str, out: Probes) -> None:
    ns = time.time_ns() // 1000 * 1000
    body = {
        "gateway_id": "BENCH-PROBE",
        "factory_id": PROBE_FACTORY,
        "batch": [
            {"machine_id": machine_id, "readings": [{"timestamp": _iso(ns), "temperature": 42.0}]}
        ],
    }
    params = urlencode(
        {"interval": "raw", "start_time": _iso(ns), "end_time": _iso(ns + 1000), "limit": 10}
    )
    get = f"{url('query_api')}/api/v1/data/machine/{machine_id}?{params}"
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    started = time.perf_counter()
    resp = await client.post(
        f"{url('ingest_gateway')}/api/v1/data/ingest", content=orjson.dumps(body), headers=headers
    )
    if resp.status_code != 202:
        out.failures += 1
        return
    # The dashboard's read carries its token like the write (without it: 401, never visible).
    ok = await _visible(
        client,
        get,
        started + 10,
        lambda content: bool(orjson.loads(content)["data"]),
        {"authorization": f"Bearer {token}"},
    )
    if ok:
        out.api_ms.append((time.perf_counter() - started) * 1000)
    else:
        out.failures += 1


async def probe_influx(client: httpx.AsyncClient, machine_id: str, out: Probes) -> None:
    s = InfluxSettings()
    ns = time.time_ns()
    line = (
        f"sensor_readings,factory_id={FLOOR_FACTORY},location=Bench,machine_id={machine_id},"
        f"sensor_type=Temperature temperature=42.0 {ns}"
    )
    query = urlencode(
        {
            "db": s.database,
            "q": f'SELECT temperature FROM "{s.raw_rp}".sensor_readings WHERE '
            f"machine_id = '{machine_id}' AND factory_id = '{FLOOR_FACTORY}' AND time = {ns}",
        }
    )
    started = time.perf_counter()
    write = await client.post(
        f"{s.url}/write?" + urlencode({"db": s.database, "rp": s.raw_rp, "precision": "ns"}),
        content=line.encode(),
    )
    if write.status_code != 204:
        out.failures += 1
        return
    ok = await _visible(
        client, f"{s.url}/query?{query}", started + 10, lambda content: b'"values"' in content
    )
    if ok:
        out.influx_ms.append((time.perf_counter() - started) * 1000)
    else:
        out.failures += 1


async def probe_while(
    loading: asyncio.Future[Any], token: str, machine_id: str, every_s: float, skip_s: float
) -> Probes:
    """Probe (API, then InfluxDB floor) every ``every_s`` until ``loading`` is done."""
    out = Probes()
    await asyncio.sleep(skip_s)  # let the background load settle first
    async with httpx.AsyncClient(timeout=10) as client:
        while not loading.done():
            t = time.perf_counter()
            await probe_api(client, token, machine_id, out)
            await probe_influx(client, machine_id, out)
            rest = every_s - (time.perf_counter() - t)
            if rest > 0 and not loading.done():
                await asyncio.sleep(rest)  # the probes' own pace
    return out
