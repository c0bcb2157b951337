"""Roles and their permissions (README: Users, roles and tokens), one table for every check."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OPERATOR = "Operator"
    SUPERVISOR = "Supervisor"
    MANAGEMENT = "Management"
    GATEWAY = "Gateway"


_OPERATOR = frozenset(
    {"read:machines", "read:sensor_data", "write:sensor_data", "read:alerts", "ack:alerts"}
)
_SUPERVISOR = _OPERATOR | {"write:machines", "read:reports", "write:reports", "write:alert_rules"}
_MANAGEMENT = _SUPERVISOR | {
    "delete:machines",
    "delete:sensor_data",
    "read:config",
    "write:config",
    "read:users",
    "write:users",
    "delete:users",
    "delete:alert_rules",
}

PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.OPERATOR: _OPERATOR,
    Role.SUPERVISOR: frozenset(_SUPERVISOR),
    Role.MANAGEMENT: frozenset(_MANAGEMENT),
    # Gateways may only push data.
    Role.GATEWAY: frozenset({"write:sensor_data"}),
}
