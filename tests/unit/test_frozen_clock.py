"""The ``clock`` fixture's starting instant (``MILLRACE_TEST_CLOCK``) and the frozen clock the
product's "hour/day in progress" modules see under it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.clock import CLOCK_MODULES, FrozenClock, clock_start

NOW = datetime(2026, 12, 2, 11, 20, 30, 250_000, tzinfo=UTC)


def ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 10**9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("59:45", ns(2026, 12, 2, 10, 59, 45)),  # the latest 15 s before an hour ends
        ("00:05", ns(2026, 12, 2, 11, 0, 5)),  # 5 s into the current hour
        ("20:30", ns(2026, 12, 2, 11, 20, 30)),
        ("23:59:45", ns(2026, 12, 1, 23, 59, 45)),  # before a day ends: yesterday's
        ("00:00:05", ns(2026, 12, 2, 0, 0, 5)),
    ],
)
def test_a_spec_picks_the_latest_instant_not_after_now(spec: str, expected: int) -> None:
    assert clock_start(NOW, spec) == expected


def test_without_a_spec_the_clock_starts_now() -> None:
    assert clock_start(NOW, None) == ns(2026, 12, 2, 11, 20, 30) + 250_000_000


def test_the_fixture_freezes_the_wall_clock_of_the_product_modules_only(
    clock: FrozenClock,
) -> None:
    import importlib

    for name in CLOCK_MODULES:
        module = importlib.import_module(name)
        assert module.time.time_ns() == clock.now_ns
        assert module.time.time() == clock.now_ns / 1e9
        assert module.time.monotonic() <= time.monotonic()  # the real one
    clock.now_ns += 3600 * 10**9
    assert importlib.import_module(CLOCK_MODULES[0]).time.time_ns() == clock.now_ns
    assert time.time_ns() != clock.now_ns  # the real clock is untouched
