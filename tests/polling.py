"""Waiting for something the tests cannot be told about: poll with a deadline, never a bare
sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def poll(fetch: Callable[[], Any], until: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    """Call ``fetch`` until ``until(result)`` holds; fail with the last result at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached before the deadline; last result: {result!r}")
        time.sleep(0.1)


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Call ``check`` until it returns something true, and return that."""
    return poll(check, bool, timeout)
