"""Factories as a scope: the ``factories`` / ``machines`` claims of an access token.

A user's token carries ``factories``: a list of factory ids, or ``"*"`` for every factory. A
gateway's token carries ``factories: [its one factory]``, ``gateway_id``, and ``machines`` (a list
of machine ids) only when the gateway is limited to some machines of its factory. Auth writes
these claims (:func:`factories_claim`); every verifier reads them back (:func:`parse_factories`,
:func:`parse_machines`) into :class:`shared.auth.verify.Principal`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

ALL_FACTORIES = "*"
# Factory ids become a routing-key word, an InfluxDB tag and an MQTT topic level: keep them plain.
FACTORY_ID = re.compile(r"^[A-Za-z0-9_:-]{1,100}$")


class ScopeClaimError(ValueError):
    """A ``factories`` or ``machines`` claim of the wrong shape."""


def factory_id_error(value: Any) -> str | None:
    """Why ``value`` is not a usable factory id, or None when it is."""
    if not isinstance(value, str) or not FACTORY_ID.match(value):
        return f"A factory id is 1 to 100 characters of letters, digits, '_', ':' or '-': {value!r}"
    return None


def factories_claim(factories: Iterable[str] | None) -> list[str] | str:
    """The claim auth signs: ``"*"`` for every factory (None), else the sorted ids."""
    return ALL_FACTORIES if factories is None else sorted(set(factories))


def parse_factories(claim: Any) -> frozenset[str] | None:
    """``"*"`` → None (every factory); a list of factory ids → that set."""
    if claim == ALL_FACTORIES:
        return None
    if not isinstance(claim, list) or any(factory_id_error(f) for f in claim):
        raise ScopeClaimError("factories claim")
    return frozenset(claim)


def parse_machines(claim: Any) -> frozenset[str] | None:
    """Absent → None (no machine limit); a list of machine ids → that set (lower-case)."""
    if claim is None:
        return None
    if not isinstance(claim, list) or not all(isinstance(m, str) for m in claim):
        raise ScopeClaimError("machines claim")
    return frozenset(m.lower() for m in claim)


def covers(granter: frozenset[str] | None, wanted: Iterable[str] | None) -> bool:
    """Whether someone scoped to ``granter`` may hand out ``wanted`` (None = every factory)."""
    if granter is None:
        return True
    return wanted is not None and set(wanted) <= granter
