"""Noticing readings that arrive twice.

The same reading again (same series and timestamp, same values) is a harmless re-delivery:
InfluxDB overwrites the point with itself. The same key with *different* values is a conflict:
InfluxDB keeps the last write, so the earlier values are gone — that must never be silent, so it
is counted (``millrace_writer_conflicts_total``) and logged with both versions.

Detection covers the keys this writer stored recently: two generations of key hash → line
hash, the newer one replacing the older once it holds half of ``WRITER_CONFLICT_WINDOW``
entries, so between half the window and the whole window of the latest keys are remembered
(~100 bytes each; a batch larger than half the window is kept whole until the next one). A
re-delivery handled by another writer or long after is not seen here.

A reading's key is its series and timestamp; its value is its line (same series, timestamp and
fields in the same order: a resend listing extra fields in another order counts as a conflict).
Every step over a batch is a C-level operation (``map``, ``zip``, dict and set operations):
Python code runs only for the keys seen before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from prometheus_client import Counter

log = logging.getLogger(__name__)

DUPLICATES = Counter(
    "millrace_writer_duplicates_total", "Readings stored again with identical values"
)
CONFLICTS = Counter(
    "millrace_writer_conflicts_total", "Readings stored again with different values (last wins)"
)


_KEY = itemgetter("machine_id", "ts", "factory_id", "sensor_type", "location")


class ConflictDetector:
    def __init__(self, window: int) -> None:
        self.window = window
        self._new: dict[int, int] = {}
        self._old: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def observe(self, readings: list[dict[str, Any]], lines: list[str]) -> tuple[int, int]:
        """Record stored readings and their lines (aligned); returns (duplicates, conflicts)."""
        keys = list(map(hash, map(_KEY, readings)))
        batch = dict(zip(keys, map(hash, lines), strict=True))
        if len(batch) < len(keys):  # the same key twice in one batch: rare, one by one
            return self._count(
                [
                    (i, self._one(k, hash(line)))
                    for i, (k, line) in enumerate(zip(keys, lines, strict=True))
                ],
                readings,
            )
        new, old = self._new, self._old
        again = (batch.keys() & new.keys()) | (batch.keys() & old.keys())
        found = [(keys.index(k), batch[k] == new.get(k, old.get(k))) for k in again]
        new.update(batch)
        self._roll()
        return self._count(found, readings)

    def _one(self, key: int, value: int) -> bool | None:
        """One reading: None if new, True if a duplicate, False if a conflict."""
        previous = self._new.get(key, self._old.get(key))
        self._new[key] = value
        self._roll()
        return None if previous is None else previous == value

    def _roll(self) -> None:
        if len(self._new) >= max(1, self.window // 2):
            self._old, self._new = self._new, {}

    def _count(
        self, found: Sequence[tuple[int, bool | None]], readings: list[dict[str, Any]]
    ) -> tuple[int, int]:
        duplicates = sum(1 for _, same in found if same is True)
        clashes = sorted(i for i, same in found if same is False)
        for i in clashes[:5]:
            r = readings[i]
            log.warning(
                "conflicting re-write: machine %s at %d ns now %s (earlier values "
                "differed; InfluxDB keeps the last)",
                r["machine_id"],
                r["ts"],
                r["fields"],
                extra={"machine_id": r["machine_id"], "ts": r["ts"]},
            )
        if duplicates:
            DUPLICATES.inc(duplicates)
        if clashes:
            CONFLICTS.inc(len(clashes))
            if len(clashes) > 5:
                log.warning("%d conflicting re-writes in one batch (first 5 logged)", len(clashes))
        return duplicates, len(clashes)
