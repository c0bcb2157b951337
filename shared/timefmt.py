"""How the API writes instants: one home for the two forms it uses.

* Readings, history, summaries and status: UTC with a ``Z``, microseconds only when there are
  some (``2025-12-13T10:00:00Z``, ``2025-12-13T10:00:00.123456Z``): :func:`iso`, and
  :func:`ns_to_iso` for the nanosecond integers InfluxDB and the envelopes carry.
* Rows read from PostgreSQL (``created_at``, ``first_seen``, audit times): as PostgreSQL gave
  them, offset included (``2025-12-13T10:00:00+00:00``): :func:`row_iso`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import overload

# gmtime/strftime cover years 1000..9999 the same way as datetime; outside, datetime decides.
_EPOCH_OK = (-30_610_224_000, 253_402_300_799)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def from_ns(ns: int) -> datetime:
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest // 1000)


def ns_to_iso(ns: int) -> str:
    """What :func:`iso` writes for ``from_ns(ns)``; formatted directly, since a 720-row history
    answer spent a third of its time in datetime. Raises ValueError or OverflowError for an
    instant datetime cannot hold."""
    seconds, rest = divmod(ns, 1_000_000_000)
    if not _EPOCH_OK[0] <= seconds <= _EPOCH_OK[1]:
        return iso(from_ns(ns))
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    micros = rest // 1000
    return f"{text}.{micros:06d}Z" if micros else f"{text}Z"


@overload
def row_iso(value: datetime | str) -> str: ...
@overload
def row_iso(value: datetime | str | None) -> str | None: ...
def row_iso(value: datetime | str | None) -> str | None:
    """A stored timestamp as PostgreSQL returned it (text passes through, None stays None)."""
    return value.isoformat() if isinstance(value, datetime) else value
