"""The common case of :mod:`shared.readings` validation, without building models.

The pydantic models in :mod:`shared.readings` are the reference: they say what is valid and
produce the exact error paths. Running them costs several Python validator calls and a model
instance per reading, which dominated HTTP ingest. Most input is valid, so the gateway first
tries the plain checks here on the parsed JSON (parsed by orjson; whatever it cannot read the
models parse themselves) and only when they do not *certainly* accept does it run the models.

The rule that keeps validation identical: every function here returns ``None`` ("ask the
models") for anything the models might refuse, normalise or order differently, and otherwise
exactly what the models would have produced — the same timestamp in nanoseconds and the same
``values()`` dict, in the same order. ``tests/unit/test_fastcheck.py`` holds the two side by side.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from shared.readings import _RESERVED, BUILTIN_FIELDS, ValidationContext, to_ns

_BUILTINS = tuple(BUILTIN_FIELDS.items())
# The canonical text of a UUID: what ``str(UUID(text))`` gives back unchanged.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# ``GatewayId`` of shared.readings (a match has no whitespace for the model to strip).
_IDENT = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Machine ids already seen in canonical form: a gateway sends the same few hundred in every
# batch, and a set look-up costs a fraction of the regular expression (py-spy: the match was
# ~2 % of the gateway under the HTTP bench). Bounded; emptied when full.
_CANONICAL_IDS: set[str] = set()
_MAX_CANONICAL_IDS = 100_000


class Window:
    """Timestamp checks of one request: the same clock for all, each distinct string parsed once
    (a gateway batch usually stamps all its machines with the same few instants)."""

    __slots__ = ("_seen", "newest", "oldest")

    def __init__(self, ctx: ValidationContext) -> None:
        self.newest = ctx.now_ns + int(ctx.max_future_skew_s * 1e9)
        self.oldest = ctx.now_ns - int(ctx.max_age_s * 1e9)
        self._seen: dict[str, int] = {}

    def ns(self, value: object) -> int | None:
        """``Reading.ts_ns()`` of an accepted timestamp; None where the model may object."""
        if type(value) is not str:
            return None
        ns = self._seen.get(value)
        if ns is None:
            try:
                parsed = datetime.fromisoformat(value)
                if parsed.tzinfo is None or parsed.utcoffset() is None:
                    return None
                ns = to_ns(parsed)
            except (ValueError, OverflowError):
                return None
            if ns > self.newest or ns < self.oldest:
                return None
            self._seen[value] = ns
        return ns


def is_zoned_iso(value: object) -> bool:
    """What ``IngestRequest.timestamp`` accepts (a string that parses, with a zone)."""
    if type(value) is not str:
        return False
    try:
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        return False
    return parsed.tzinfo is not None and parsed.utcoffset() is not None


def values(
    reading: dict[str, Any], extra_fields: dict[str, tuple[float, float]]
) -> dict[str, float] | None:
    """``Reading.values()`` of a reading the model accepts; None where it may object.

    Built-in fields first in their fixed order, then declared extra fields in the order given,
    every value a float — as the model orders and converts them.
    """
    out: dict[str, float] = {}
    known = 1  # "timestamp"
    for name, (low, high) in _BUILTINS:
        if name in reading:
            known += 1
            v = reading[name]
            if v is None:
                continue
            t = type(v)
            if t is not float and t is not int:
                return None  # bool, str, ...: the strict float field refuses them
            # NaN compares false; the bounds are finite and small, so an int within them is
            # exactly the float the model makes of it (and a huge one never gets converted).
            if not low <= v <= high:
                return None
            out[name] = float(v)
    if len(reading) > known:
        for name, v in reading.items():
            if name == "timestamp" or name in BUILTIN_FIELDS:
                continue
            bounds = extra_fields.get(name)
            t = type(v)
            if bounds is None or name in _RESERVED or (t is not int and t is not float):
                return None
            try:
                f = float(v)
            except OverflowError:
                return None
            if not (math.isfinite(f) and bounds[0] <= f <= bounds[1]):
                return None
            out[name] = f
    return out or None


def label(value: object) -> bool:
    """A ``Label`` the model keeps as it is (None, or 1-200 characters, nothing to strip)."""
    if value is None:
        return True
    return (
        type(value) is str
        and 0 < len(value) <= 200
        and not value[0].isspace()
        and not value[-1].isspace()
    )


def machine_id(value: object) -> str | None:
    """The machine id as the model gives it back (``str(UUID)``), for canonical text only."""
    if type(value) is not str:
        return None
    if value in _CANONICAL_IDS:
        return value
    if _UUID.fullmatch(value):
        if len(_CANONICAL_IDS) >= _MAX_CANONICAL_IDS:
            _CANONICAL_IDS.clear()
        _CANONICAL_IDS.add(value)
        return value
    return None


def ident(value: object) -> bool:
    """A ``GatewayId`` the model keeps as it is."""
    return type(value) is str and _IDENT.fullmatch(value) is not None
