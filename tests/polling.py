"""Waiting for something the tests cannot be told about: poll with a deadline, never a bare
sleep."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


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


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 15.0) -> None:
    """The asynchronous wait: call ``check`` (awaiting what it returns, if it must be awaited)
    until it is true; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        done = check()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.05)


async def equals(value: Awaitable[T], expected: T) -> bool:
    """For :func:`eventually`: ``lambda: equals(count(), 3)``."""
    return await value == expected
