"""Figures other modules add to the benchmark table, without touching its runner.

A module (say ``tools/bench/mqtt_drain.py``) defines ``FIGURES``, a list of :class:`Figure`, and
is registered with one line in ``FIGURE_MODULES`` (``tools/bench/cli.py``). For every figure,
each round runs ``measure`` once as a guarded run (quiet machine, census, discarded and repeated
when a service restarts under it), keeps the values it returns, and at the end ``rows`` turns
the medians into table rows. ``--only <name>`` selects it like the built-in figures.

Example::

    async def measure(ctx: Context) -> dict[str, float]:
        ...  # ctx.token, ctx.machines, ctx.factory("d"), ctx.executor, ctx.note_backlog(...)
        return {"drain.rate": rate, "drain.ceiling": ceiling}

    def rows(ctx: Context, v: dict[str, float]) -> list[Row]:
        ratio = v["drain.rate"] / v["drain.ceiling"]
        return [Row("MQTT backlog drained, readings/s", num(v["drain.rate"]), ..., f"{ratio:.2f}",
                    "≥ 0.7", "yes" if ratio >= 0.7 else "NO")]

    FIGURES = [Figure("drain", measure, rows)]
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

from tools.bench.table import Row


class Context(Protocol):
    """What a figure's run can use: the bench's arguments, token, machines and load processes."""

    args: argparse.Namespace
    token: str  # an Operator access token, renewed every round
    machines: list[str]  # registered machine ids (``--machines`` of them)
    # Machines the run registered (``made`` of tools.simulator.registry.ensure_machines): removed,
    # with their rules and alerts, when the run ends.
    registered: list[str]
    values: dict[str, list[float]]  # every value measured so far, by key, one per run

    @property
    def pool(self) -> Executor: ...  # load-generator processes (spawned)

    def factory(self, kind: str) -> str:
        """A fresh factory id for this run's readings; they are dropped after the run."""
        ...

    def note_backlog(self, started: float, finished: float) -> None:
        """Count the writer-queue backlog between two wall-clock times in the RSS rows."""
        ...


@dataclass(frozen=True, slots=True)
class Figure:
    name: str  # ``--only`` choice, log name, and the prefix of its value keys
    measure: Callable[[Context], Awaitable[dict[str, float]]]
    rows: Callable[[Context, dict[str, float]], list[Row]]
    notes: Callable[[Context, dict[str, float]], list[str]] | None = None


def load(modules: Iterable[str]) -> list[Figure]:
    """The ``FIGURES`` of each module, in order; a clear error for a module without them."""
    out: list[Figure] = []
    for name in modules:
        figures = getattr(importlib.import_module(name), "FIGURES", None)
        if not isinstance(figures, list) or not all(isinstance(f, Figure) for f in figures):
            raise TypeError(f"{name} must define FIGURES: list[tools.bench.figures.Figure]")
        out.extend(figures)
    return out
