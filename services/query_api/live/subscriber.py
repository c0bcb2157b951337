"""One stream client: what it asked for, and a bounded buffer that turns overflow into a gap."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.query_api.live.events import LiveEvent, frame, ns_to_iso


@dataclass(slots=True, frozen=True)
class Filter:
    machine_ids: frozenset[str] = frozenset()
    locations: frozenset[str] = frozenset()
    factory_ids: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()

    def matches(self, ev: LiveEvent) -> bool:
        return (
            (not self.types or ev.type in self.types)
            and (not self.machine_ids or ev.machine_id in self.machine_ids)
            and (not self.locations or ev.location in self.locations)
            and (not self.factory_ids or ev.factory_id in self.factory_ids)
        )


class Subscriber:
    """Filled by the hub without ever waiting; drained by the client's response.

    When the client cannot keep up (its buffer holds ``limit`` events), further events are
    counted, not kept, until it has caught up; then it gets one ``gap`` event saying how many
    were lost and between which times, so the console can read them from history.
    """

    def __init__(self, filt: Filter, limit: int) -> None:
        self.filter = filt
        self.limit = limit
        self._pending: list[bytes] = []
        self._wake = asyncio.Event()
        self.dropped = 0
        self._gap_from: int | None = None
        self._gap_to: int | None = None
        self.gaps = 0
        # When (monotonic s) a quiet stream is woken to send a heartbeat: the hub's one
        # periodic tick wakes every stream that is due, no timer per wait.
        self.due = math.inf
        # Who is told when the first event since the last take arrives: None wakes the stream
        # at once; the hub sets its own, which may hold the stream until its next flush (a
        # busy stream then writes what came meanwhile at once, instead of one write per event).
        self.notify: Callable[[Subscriber], None] | None = None
        self._notified = False
        self.slot = 0  # the hub's flush slot for this stream
        self.taken_at = -math.inf  # when (monotonic s) the stream last took what was waiting

    def offer(self, ev: LiveEvent) -> bool:
        """Queue ``ev`` if it matches; False when it had to be dropped."""
        if not self.filter.matches(ev):
            return True
        if not self._notified:
            self._notified = True
            if self.notify is None:
                self._wake.set()
            else:
                self.notify(self)
        if self.dropped or len(self._pending) >= self.limit:
            self.dropped += 1
            if self._gap_from is None or ev.ts_ns < self._gap_from:
                self._gap_from = ev.ts_ns
            if self._gap_to is None or ev.ts_ns > self._gap_to:
                self._gap_to = ev.ts_ns
            return False
        self._pending.append(ev.frame)
        return True

    def gap(self, reason: str, dropped: int = 0) -> None:
        """Tell the client it missed events (e.g. it resumed from an id this process forgot)."""
        self._pending.append(frame(None, "gap", {"reason": reason, "dropped": dropped}))
        self._wake.set()

    def wake(self) -> None:
        """Wake the stream's :meth:`take` (it then returns what is waiting, maybe nothing)."""
        self._wake.set()

    def wake_if_due(self, now: float) -> None:
        if now >= self.due:
            self._wake.set()

    async def take(self, wait_s: float | None = None) -> bytes | None:
        """Everything waiting, as one chunk (empty when woken with nothing waiting); None when
        nothing came within ``wait_s`` (None: wait until woken)."""
        if not self._wake.is_set():
            if wait_s is None:
                await self._wake.wait()
            else:
                try:
                    async with asyncio.timeout(wait_s):
                        await self._wake.wait()
                except TimeoutError:
                    return None
        self._wake.clear()
        self._notified = False
        self.taken_at = time.monotonic()
        out, self._pending = self._pending, []
        if self.dropped:
            self.gaps += 1
            out.append(
                frame(
                    None,
                    "gap",
                    {
                        "reason": "slow client",
                        "dropped": self.dropped,
                        "from": ns_to_iso(self._gap_from or 0),
                        "to": ns_to_iso(self._gap_to or 0),
                    },
                )
            )
            self.dropped, self._gap_from, self._gap_to = 0, None, None
        return b"".join(out)
