"""After a Redis restart, the services' clients carry on: the first call on a pooled connection
that died with the old server reconnects instead of failing (create_redis)."""

from __future__ import annotations

import pytest

from shared.settings import RedisSettings
from shared.startup import create_redis
from tests.dependencies import DependencyControl

pytestmark = [pytest.mark.integration, pytest.mark.disruptive, pytest.mark.timeout(120)]


async def test_the_first_call_after_a_restart_succeeds(
    redis_settings: RedisSettings, dependency_control: DependencyControl
) -> None:
    client = create_redis(redis_settings)
    try:
        await client.set("millrace:test:restart", "before")
        dependency_control.stop("redis")
        dependency_control.start("redis")
        # The connection in the pool died with the old server; this call must not fail.
        assert await client.set("millrace:test:restart", "after")
        assert await client.get("millrace:test:restart") == b"after"
    finally:
        await client.delete("millrace:test:restart")
        await client.aclose()
