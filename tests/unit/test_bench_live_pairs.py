"""The live benchmark's throughput pairs: each odd stretch against the two around it."""

from __future__ import annotations

import pytest

from tools.bench.live import Toggled


def test_clients_in_the_odd_stretches_each_against_the_mean_of_the_two_without() -> None:
    t = Toggled(False, [100.0, 90.0, 110.0, 99.0, 90.0])
    assert [t.clients_in(i) for i in range(5)] == [False, True, False, True, False]
    assert t.with_clients == [90.0, 99.0] and t.without == [100.0, 110.0, 90.0]
    assert t.changes() == pytest.approx([90 / 105 - 1, 99 / 100 - 1])


def test_clients_first_the_odd_stretches_are_without_and_the_change_is_read_the_same_way() -> None:
    """With the clients in the even stretches, a stretch without them slower than the two with
    them around it says the clients cost nothing; faster says they cost that much."""
    t = Toggled(True, [90.0, 100.0, 110.0, 80.0, 90.0])
    assert t.with_clients == [90.0, 110.0, 90.0] and t.without == [100.0, 80.0]
    assert t.changes() == pytest.approx([100 / 100 - 1, 100 / 80 - 1])
    same_cost = Toggled(True, [95.0, 100.0, 95.0])
    assert same_cost.changes() == pytest.approx([-0.05])
