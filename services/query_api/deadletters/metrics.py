"""Prometheus metrics of the dead-letter archive, by reason code.

Counters count what this process did; the ``pending`` gauge is the archive's state (letters not
replayed yet), refreshed from PostgreSQL, so every query_api copy reports the same value.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ARCHIVED = Counter(
    "millrace_deadletters_archived_total",
    "Dead letters archived from the dead-letter queue into PostgreSQL",
    ["reason", "source"],
)
REPLAYED = Counter(
    "millrace_deadletters_replayed_total",
    "Dead letters whose readings were validated again and published back to telemetry",
    ["reason"],
)
REPLAY_REFUSED = Counter(
    "millrace_deadletters_replay_refused_total",
    "Replays refused because the letter is still invalid (it stays archived)",
    ["reason"],
)
PURGED = Counter("millrace_deadletters_purged_total", "Dead letters deleted", ["reason"])
PENDING = Gauge(
    "millrace_deadletters_pending", "Archived dead letters not replayed yet", ["reason"]
)

_seen: set[str] = set()


def set_pending(counts: dict[str, int]) -> None:
    """Publish the pending counts; a reason that has none left goes to 0 (not stale)."""
    for reason in _seen - set(counts):
        PENDING.labels(reason).set(0)
    for reason, n in counts.items():
        PENDING.labels(reason).set(n)
    _seen.update(counts)
