"""A starlette lifespan built on :class:`contextlib.AsyncExitStack`.

``open_state`` opens what the service needs and registers each closer on the stack as soon as
the thing exists, so that everything is closed in reverse order on every path: a normal
shutdown, an error while serving, and a start-up that failed half-way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

from starlette.applications import Starlette

from shared.startup import tune_gc

SettingsT = TypeVar("SettingsT")
StateT = TypeVar("StateT", bound=Mapping[str, Any])

OpenState = Callable[[AsyncExitStack, SettingsT], Awaitable[StateT]]
Lifespan = Callable[[Starlette], AbstractAsyncContextManager[StateT]]


def lifespan(settings: SettingsT, open_state: OpenState[SettingsT, StateT]) -> Lifespan[StateT]:
    """The app's lifespan: ``open_state(stack, settings)`` at start-up, the stack unwound at
    shutdown. Start-up ends by freezing what it built out of the garbage collector's sight."""

    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[StateT]:
        async with AsyncExitStack() as stack:
            state = await open_state(stack, settings)
            tune_gc()
            yield state

    return run
