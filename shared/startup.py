"""Start-up helpers: wait for dependencies with bounded, logged retries; build common clients."""

from __future__ import annotations

import ctypes
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from shared.settings import RedisSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


async def wait_for(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    errors: tuple[type[BaseException], ...],
    timeout_s: float = 120.0,
) -> T:
    """Call ``attempt`` until it succeeds; WARNING per retry, the error re-raised at the end."""
    retrying = AsyncRetrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_exponential(multiplier=0.2, max=5),
        retry=retry_if_exception_type(errors),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    async for trying in retrying:
        with trying:
            result = await attempt()
            log.info("%s reachable", what)
            return result
    raise AssertionError("unreachable")  # pragma: no cover


def create_redis(settings: RedisSettings) -> aioredis.Redis:
    """A Redis client whose calls fail fast: it is a cache and must never stall a request."""
    return aioredis.from_url(
        settings.url.get_secret_value(),
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        health_check_interval=15,
        retry_on_timeout=False,
        # After a Redis restart every pooled connection is dead: one new connection is tried
        # before a call fails, so the first request after the restart is not the one that
        # finds out (and Redis is not skipped for a cool-down while it is up again).
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[redis.exceptions.ConnectionError],
    )


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 256 * 1024


def tune_gc() -> None:
    """Call once start-up is done. What start-up built (modules, models, clients) is moved out
    of the collector's sight for good (``gc.freeze``), and the young generation is collected
    every 50,000 allocations instead of 700: a busy service allocates many short-lived
    containers per request, which reference counting frees anyway, and with the defaults the
    collector ran thousands of times a second walking the long-lived ones. (Start-up objects
    that later become cyclic garbage, e.g. a first broker connection replaced on reconnect, are
    then never freed: a bounded, one-time cost.)

    The older generations are collected every 2 young collections: with start-up frozen they
    hold only a few thousand objects, so a full collection is cheap, and cyclic garbage that
    lived through a few awaits (an httpx request and response pair holding a writer's whole
    line-protocol body) must not wait millions of allocations to be freed: with (50,000, 20,
    20) a writer's RSS grew past 700 MB during a benchmark.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 2, 2)
    _fixed_mmap_threshold()


def _fixed_mmap_threshold() -> None:
    """Large buffers (request bodies, joined line protocol) straight from mmap, returned to the
    system when freed. glibc raises its mmap threshold after each such free, up to 32 MB, so
    later large buffers came from the heap and fragmented it: RSS stayed at its high-water
    mark. Setting the threshold fixes it (and turns off that adjustment). glibc only."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        log.debug("not glibc: malloc left as it is")
