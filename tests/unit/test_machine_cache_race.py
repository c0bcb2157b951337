"""The machine registry cache under interleaving: a lookup that read PostgreSQL while the machine
changed must not put the value it read into the cache (it may be the old one, served for the
whole TTL). The repository here is a stand-in that blocks on an event; the real repository and
Redis are exercised by the integration tests of ingest and query_api."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.machines import Machine, MachineCache

MID = "6f1c7a52-3d0e-4f57-9a43-0d8f2f0c9e11"


def machine(status: str) -> Machine:
    return Machine(
        id=MID,
        name="Press 7",
        location="Hall R",
        sensor_type="Temperature",
        status=status,
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
    )


class SlowRepository:
    """Answers what ``current`` holds when the read started, after ``release`` is set."""

    def __init__(self) -> None:
        self.current = machine("active")
        self.reading = asyncio.Event()
        self.release = asyncio.Event()
        self.reads = 0

    async def get_many(self, ids: list[str]) -> dict[str, Machine]:
        seen = self.current
        self.reads += 1
        self.reading.set()
        await self.release.wait()
        return {MID: seen}


async def test_a_read_racing_an_update_is_answered_but_not_cached() -> None:
    repo = SlowRepository()
    cache = MachineCache(repo, None)  # type: ignore[arg-type]
    lookup = asyncio.ensure_future(cache.get(MID))
    await repo.reading.wait()
    repo.current = machine("maintenance")  # the update commits while the read is in flight
    await cache.invalidate(MID)
    repo.release.set()
    assert (await lookup).status == "active"  # what this request read
    assert (await cache.get(MID)).status == "maintenance"  # not served from a stale cache entry
    assert repo.reads == 2


async def test_a_read_with_no_change_meanwhile_is_cached() -> None:
    repo = SlowRepository()
    repo.release.set()
    cache = MachineCache(repo, None)  # type: ignore[arg-type]
    first: Any = await cache.get(MID)
    again: Any = await cache.get(MID)
    assert first == again and repo.reads == 1
