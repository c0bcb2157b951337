"""write_isolating: bisecting around refused points, and no reference cycle holding a batch."""

from __future__ import annotations

import asyncio
import gc
import weakref

from services.writer.batch import write_isolating
from shared.errors import InfluxRejected


class Lines(list[str]):
    """A list that can be watched with a weak reference."""


def test_a_batch_is_freed_by_reference_counting_alone() -> None:
    async def write(body: bytes) -> None:
        if b"bad" in body:
            raise InfluxRejected(400, "bad point")

    lines = Lines(["ok 1", "bad 2", "ok 3", "ok 4"])
    watch = weakref.ref(lines)
    gc.disable()
    try:
        outcome = asyncio.run(write_isolating(lines, [(0, i) for i in range(4)], write))
        del lines
        assert watch() is None  # a cycle would keep it until the collector ran
    finally:
        gc.enable()
    assert outcome.written == 3
    assert [r.owner for r in outcome.rejected] == [(0, 1)]
    assert outcome.writes == 5  # whole, halves, then the first half's halves
