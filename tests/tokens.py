"""Short names for the token helpers service tests use (see :mod:`tests.auth_testing`)."""

from __future__ import annotations

from typing import Any

from tests.auth_testing import bearer, install, jwks

__all__ = ["bearer", "jwks", "trust_test_key"]


def trust_test_key(app_state: dict[str, Any]) -> None:
    """Make an app started by ``TestClient`` trust the testing keys."""
    install(app_state["authorizer"])
