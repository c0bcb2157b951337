"""The running pipeline (``make up``): real processes, real tokens from the auth service. The
helpers these fixtures use are in ``tests/e2e/pipeline.py``; what a run registers in the stack is
removed when it ends (``tests/e2e/cleanup.py``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import pytest

from tests.e2e import cleanup
from tests.e2e.pipeline import SERVICES, Tokens, ready_url, service_url


@pytest.fixture(scope="session", autouse=True)
def _remove_what_the_run_made() -> Iterator[None]:
    """Machines (with their rules and alerts), users and gateways the run registered in the
    running stack are removed once it ends, so that the developer's console keeps showing the
    stack's own machines. Trouble doing so is a warning: it never hides or changes an outcome."""
    yield
    if cleanup.MADE.tokens is None:  # no test signed in through ``_tokens``
        cleanup.MADE.tokens = Tokens(service_url("auth", SERVICES["auth"]))
    for problem in cleanup.remove(cleanup.MADE, service_url("query_api", SERVICES["query_api"])):
        warnings.warn(problem, cleanup.LeftBehind, stacklevel=1)


@pytest.fixture(scope="session")
def urls() -> dict[str, str]:
    """The running services' URLs, each checked to answer ``/ready``."""
    return {name: ready_url(name, port) for name, port in SERVICES.items()}


@pytest.fixture(scope="session")
def _tokens(urls: dict[str, str]) -> Tokens:
    tokens = Tokens(urls["auth"])
    cleanup.MADE.tokens = tokens  # the removal at the end signs in as the run's Management user
    return tokens


@pytest.fixture
def token_for(_tokens: Tokens) -> Callable[[str], str]:
    """``token_for(role)``: an access token with at least ``FRESH_FOR_S`` left to live."""
    return _tokens


@pytest.fixture
def auth_headers(token_for: Callable[[str], str]) -> Callable[[str], dict[str, str]]:
    return lambda role: {"Authorization": f"Bearer {token_for(role)}"}
