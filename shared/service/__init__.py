"""The one service skeleton: every Millrace service starts, configures, serves and drains here.

A service writes only what is its own: its settings (``Settings``), what it opens at start-up
(``open_state``, yielding a ``TypedDict``), what ``/ready`` checks, its routes (or its worker),
and a one-line ``__main__.py``. See docs/architecture.md "Adding a service".
"""

from shared.service import resources
from shared.service.app import request_state, service_app
from shared.service.entry import load_settings, run
from shared.service.lifespan import OpenState, lifespan
from shared.service.probes import influx_ready, postgres_ready

__all__ = [
    "OpenState",
    "influx_ready",
    "lifespan",
    "load_settings",
    "postgres_ready",
    "request_state",
    "resources",
    "run",
    "service_app",
]
