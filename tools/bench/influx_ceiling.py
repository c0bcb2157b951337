"""The InfluxDB ceiling: line protocol written by one client, bodies built beforehand.

Points have the pipeline's shape (measurement ``sensor_readings``, its four tags, three float
fields, ns timestamps), in batches of the writer's size, written one request after the other on
one connection into a scratch database that is dropped afterwards.
"""

from __future__ import annotations

import http.client
import time
import uuid
from urllib.parse import urlencode, urlsplit

from services.writer.batch import reading_line
from shared.settings import InfluxSettings

DATABASE = "millrace_bench_ceiling"
FACTORY = "bench-ceiling"


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> None:
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    payload = resp.read()
    if resp.status >= 300:
        raise RuntimeError(
            f"InfluxDB {method} {path[:60]} answered {resp.status}: {payload[:200]!r}"
        )


def _connection(settings: InfluxSettings) -> http.client.HTTPConnection:
    parts = urlsplit(settings.url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 8086, timeout=60)


def build_bodies(points: int, batch: int, machines: int = 50) -> list[bytes]:
    ids = [str(uuid.uuid4()) for _ in range(machines)]
    start = time.time_ns() - 3600 * 10**9
    bodies = []
    for b in range(0, points, batch):
        lines = [
            reading_line(
                {
                    "machine_id": ids[i % machines],
                    "factory_id": FACTORY,
                    "sensor_type": "Temperature",
                    "location": "Bench",
                    "ts": start + i * 1000,
                    "fields": {"temperature": 50 + i % 97 / 10, "pressure": 101.5, "speed": 1400.0},
                }
            )
            for i in range(b, min(b + batch, points))
        ]
        bodies.append("\n".join(lines).encode())
    return bodies


def measure(
    bodies: list[bytes], min_seconds: float, settings: InfluxSettings | None = None
) -> tuple[float, float]:
    """Points per second InfluxDB stored from one client writing ``bodies`` back to back, pass
    after pass until at least ``min_seconds`` of writing (a short run swings widely with what
    InfluxDB's compaction and the other processes happen to do); and the seconds written.

    Each pass writes new series (its own ``factory_id``), so no pass overwrites the points of
    another; the renaming happens between passes, outside the timed writes.
    """
    settings = settings or InfluxSettings()
    conn = _connection(settings)
    query = "/query?" + urlencode({"q": f'CREATE DATABASE "{DATABASE}"'})
    _request(conn, "POST", query)
    path = "/write?" + urlencode({"db": DATABASE, "precision": "ns"})
    per_pass = sum(body.count(b"\n") + 1 for body in bodies)
    points = 0
    elapsed = 0.0
    try:
        while elapsed < min_seconds or points == 0:
            tag = f"factory_id={FACTORY}-{points // per_pass}".encode()
            renamed = [body.replace(f"factory_id={FACTORY}".encode(), tag) for body in bodies]
            started = time.perf_counter()
            for body in renamed:
                _request(conn, "POST", path, body)
            elapsed += time.perf_counter() - started
            points += per_pass
    finally:
        _request(conn, "POST", "/query?" + urlencode({"q": f'DROP DATABASE "{DATABASE}"'}))
        conn.close()
    return points / elapsed, elapsed
