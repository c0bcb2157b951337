"""Factory scope of accounts: what users and gateways may be given, and by whom.

A user's ``factories`` is a list of factory ids or ``"*"`` (every factory, stored as NULL). A
gateway belongs to one factory and may be limited to some of its machines. Whoever grants a
scope must hold it: a Management user of factories ["A"] may only grant ["A"] (or part of it),
and may only change the users and gateways wholly inside it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from services.auth.errors import InvalidInput, OutOfScope, field_error
from shared.audit import Actor
from shared.auth.scope import ALL_FACTORIES, covers, factory_id_error
from shared.auth.verify import Principal

# The scope of an actor: its factories, None = every factory.
Scope = frozenset[str] | None
EVERY_FACTORY: Scope = None


def parse_factories(value: Any, name: str = "factories") -> list[str] | None:
    """``"*"`` or None → None (every factory); else a non-empty list of factory ids."""
    if value is None or value == ALL_FACTORIES:
        return None
    if not isinstance(value, list) or not value:
        raise InvalidInput(
            [field_error(name, 'A non-empty list of factory ids, or "*" for every factory', value)]
        )
    errors = [field_error(name, e, f) for f in value if (e := factory_id_error(f))]
    if errors:
        raise InvalidInput(errors)
    return sorted(set(value))


def parse_factory(value: Any, name: str = "factory_id") -> str:
    if (problem := factory_id_error(value)) is not None:
        raise InvalidInput([field_error(name, problem, value)])
    assert isinstance(value, str)
    return value


def parse_machine_ids(value: Any, name: str = "machine_ids") -> list[str] | None:
    """None → None (every machine of the factory); else a non-empty list of machine UUIDs."""
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise InvalidInput(
            [field_error(name, "A non-empty list of machine ids, or null for every machine", value)]
        )
    ids: list[str] = []
    errors = []
    for item in value:
        try:
            ids.append(str(uuid.UUID(item)))
        except (TypeError, ValueError, AttributeError):
            errors.append(field_error(name, "Not a machine id (UUID)", item))
    if errors:
        raise InvalidInput(errors)
    return sorted(set(ids))


def scope_of(principal: Principal | None) -> Scope:
    """The actor's factories; the admin CLI (no principal) holds every factory."""
    return EVERY_FACTORY if principal is None else principal.factories


def require_grant(scope: Scope, actor: Actor, wanted: Iterable[str] | None, what: str) -> None:
    """Refuse (403) handing out factories ``wanted`` (None = every) beyond ``scope``."""
    wanted_list = None if wanted is None else sorted(wanted)
    if covers(scope, wanted_list):
        return
    held = ", ".join(sorted(scope or ())) or "none"
    asked = ALL_FACTORIES if wanted_list is None else ", ".join(wanted_list)
    raise OutOfScope(
        f"{actor.username} manages factories {held} only: cannot {what} for factories {asked}"
    )


def default_grant(scope: Scope) -> list[str] | None:
    """What a new user gets when no factories are given: the creator's own scope."""
    return None if scope is None else sorted(scope)
