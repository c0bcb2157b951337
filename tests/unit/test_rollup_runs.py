from __future__ import annotations

from services.writer.rollup import HOUR_NS, daily_select, hourly_select, runs


def test_consecutive_windows_merge_and_runs_are_capped() -> None:
    h = HOUR_NS
    windows = {0: {"a"}, h: {"b"}, 2 * h: {"a"}, 5 * h: {"c"}}
    assert runs(windows, h, 100) == [(0, 3 * h, {"a", "b"}), (5 * h, 6 * h, {"c"})]
    capped = runs({i * h: {"m"} for i in range(5)}, h, 2)
    assert [(s // h, e // h) for s, e, _ in capped] == [(0, 2), (2, 4), (4, 5)]


def test_tier_selects_name_every_statistic() -> None:
    sel = hourly_select(["speed"])
    for stat in ("mean", "min", "max", "count", "sum"):
        assert f'{stat}("speed") AS "{stat}_speed"' in sel
    assert 'sum("count_speed") AS "count_speed"' in daily_select(["speed"])
    assert 'min("min_speed") AS "min_speed"' in daily_select(["speed"])
