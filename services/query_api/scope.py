"""Factories as a scope for every read and change of the query API.

A token names the factories its holder may see (:attr:`Principal.factories`, None = every
factory). The same four rules hold for every endpoint (README "Factories: what a token sees"):

* something addressed by its id (a machine, an alert, a rule, a dead letter) of a factory
  outside the scope answers **404**, exactly as an unknown id: its existence is not revealed;
* a factory the caller names (a ``factory_id`` filter, a new machine's factory, a rule's
  factory) outside the scope answers **403** naming it;
* lists, counts, summaries, status and the live stream hold only the scope's factories;
* what spans every factory (configuration changes, the audit log, dead letters whose factory
  cannot be told) needs a token of every factory (403 otherwise).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from shared.auth.verify import Principal
from shared.http import ApiError
from shared.machines import Machine

ALL_FACTORIES_NEEDED = "This needs a token of every factory"
# How the OpenAPI documents name the two answers of the scope.
UNKNOWN = "Unknown machine (or one of another factory)"
OUTSIDE = "The factory named is outside your scope"


def principal(request: Request) -> Principal:
    """The caller, as :func:`shared.http.requires` verified it."""
    p: Principal = request.state.principal
    return p


def require_factory(p: Principal, factory_id: str) -> None:
    """403 when the caller names a factory outside its scope."""
    if not p.sees_factory(factory_id):
        raise ApiError(
            403,
            f"Factory {factory_id!r} is outside your scope",
            factory_id=factory_id,
            factories=p.factory_list,
        )


def require_every_factory(p: Principal, what: str) -> None:
    """403 unless the caller's token covers every factory (changes that span them all)."""
    if p.factories is not None:
        raise ApiError(403, f"{ALL_FACTORIES_NEEDED}: {what}", factories=p.factory_list)


def visible(p: Principal, machine: Machine | None) -> Machine | None:
    """``machine`` when the caller may see it; None (as if unknown) otherwise."""
    if machine is None or not p.sees_machine(machine.id, machine.factory_id):
        return None
    return machine


def machine_or_404(p: Principal, machine: Machine | None, machine_id: str) -> Machine:
    found = visible(p, machine)
    if found is None:
        raise ApiError(404, "Machine not found", machine_id=machine_id)
    return found


def condition(p: Principal, column: str = "factory_id") -> tuple[str, list[Any]]:
    """A SQL condition keeping the caller's factories (``TRUE`` for every factory)."""
    factories = p.factory_list
    if factories is None:
        return "TRUE", []
    return f"{column} = ANY(%s)", [factories]
