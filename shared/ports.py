"""Which port each service listens on, and the variable that moves it: the one map that
settings defaults, tools and tests read (``infra/local/services.sh`` carries the same defaults;
``python -m shared.ports`` prints them as ``NAME PORT_VARIABLE PORT`` lines for scripts)."""

from __future__ import annotations

import os
import sys
from typing import NamedTuple


class Port(NamedTuple):
    variable: str
    default: int


PORTS: dict[str, Port] = {
    "ingest_gateway": Port("INGEST_GATEWAY_PORT", 8001),
    "query_api": Port("QUERY_API_PORT", 8002),
    "auth": Port("AUTH_PORT", 8003),
    "mqtt_bridge": Port("MQTT_BRIDGE_PORT", 8004),
    "writer": Port("WRITER_PORT", 8005),
    "alerter": Port("ALERTER_PORT", 8006),
}


def port(service: str) -> int:
    """The service's port: its variable when set, else the default."""
    variable, default = PORTS[service]
    return int(os.environ.get(variable) or default)


def url(service: str, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port(service)}"


if __name__ == "__main__":
    for name, (variable, default) in PORTS.items():
        sys.stdout.write(f"{name} {variable} {default}\n")
