"""The running pipeline (``make up``): real processes, real tokens from the auth service. The
helpers these fixtures use are in ``tests/e2e/pipeline.py``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.pipeline import SERVICES, Tokens, ready_url


@pytest.fixture(scope="session")
def urls() -> dict[str, str]:
    """The running services' URLs, each checked to answer ``/ready``."""
    return {name: ready_url(name, port) for name, port in SERVICES.items()}


@pytest.fixture(scope="session")
def _tokens(urls: dict[str, str]) -> Tokens:
    return Tokens(urls["auth"])


@pytest.fixture
def token_for(_tokens: Tokens) -> Callable[[str], str]:
    """``token_for(role)``: an access token with at least ``FRESH_FOR_S`` left to live."""
    return _tokens


@pytest.fixture
def auth_headers(token_for: Callable[[str], str]) -> Callable[[str], dict[str, str]]:
    return lambda role: {"Authorization": f"Bearer {token_for(role)}"}
