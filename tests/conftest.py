"""Fixtures shared by every test package. The dependencies (service → url → settings) are in
``tests/dependencies.py``, the frozen clock in ``tests/clock.py``, both loaded as plugins by the
root ``conftest.py``."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A local port where every connection is refused at once, for as long as the test runs: it
    is bound by this process and never listens, so nothing else can take it (no port number
    is assumed to be free)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop or freeze a dependency run last, so they cannot disturb the others."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)
