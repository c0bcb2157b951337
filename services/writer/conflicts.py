"""Noticing readings that arrive twice.

The same reading again (same series and timestamp, same values) is a harmless re-delivery:
InfluxDB overwrites the point with itself. The same key with *different* values is a conflict:
InfluxDB keeps the last write, so the earlier values are gone — that must never be silent, so it
is counted (``millrace_writer_conflicts_total``) and logged with both versions.

Detection covers the keys this writer stored recently (a bounded map of key hash → value hash,
``WRITER_CONFLICT_WINDOW`` entries, ~100 bytes each); a re-delivery handled by another writer
or long after is not seen here.
"""

from __future__ import annotations

import logging
from itertools import islice
from typing import Any

from prometheus_client import Counter

log = logging.getLogger(__name__)

DUPLICATES = Counter(
    "millrace_writer_duplicates_total", "Readings stored again with identical values"
)
CONFLICTS = Counter(
    "millrace_writer_conflicts_total", "Readings stored again with different values (last wins)"
)


def _key(r: dict[str, Any]) -> int:
    return hash((r["machine_id"], r["ts"], r["factory_id"], r["sensor_type"], r["location"]))


def _values(r: dict[str, Any]) -> int:
    # The same fields and values in any order hash the same.
    return hash(frozenset(r["fields"].items()))


class ConflictDetector:
    def __init__(self, window: int) -> None:
        self.window = window
        self._seen: dict[int, int] = {}

    def observe(self, readings: list[dict[str, Any]]) -> tuple[int, int]:
        """Record stored readings; returns (duplicates, conflicts) among them."""
        seen = self._seen
        duplicates = conflicts = 0
        for r in readings:
            key = _key(r)
            value = _values(r)
            previous = seen.get(key)
            if previous is not None:
                if previous == value:
                    duplicates += 1
                else:
                    conflicts += 1
                    if conflicts <= 5:
                        log.warning(
                            "conflicting re-write: machine %s at %d ns now %s (earlier values "
                            "differed; InfluxDB keeps the last)",
                            r["machine_id"],
                            r["ts"],
                            r["fields"],
                            extra={"machine_id": r["machine_id"], "ts": r["ts"]},
                        )
                del seen[key]  # re-insert: most recent last
            seen[key] = value
        overflow = len(seen) - self.window
        if overflow > 0:
            for key in list(islice(seen, overflow)):
                del seen[key]
        if duplicates:
            DUPLICATES.inc(duplicates)
        if conflicts:
            CONFLICTS.inc(conflicts)
            if conflicts > 5:
                log.warning("%d conflicting re-writes in one batch (first 5 logged)", conflicts)
        return duplicates, conflicts
