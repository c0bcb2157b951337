"""The table ``make bench`` prints: each figure beside its ceiling (or floor), same runs."""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path


@dataclass(slots=True)
class Row:
    figure: str
    measured: str
    reference: str  # the ceiling or floor measured in the same runs
    ratio: str
    target: str
    met: str  # "yes", "NO", or "-" (no target)


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    debian = "?"
    with contextlib.suppress(OSError):
        debian = Path("/etc/debian_version").read_text().strip()
    nproc = len(os.sched_getaffinity(0))
    python = platform.python_version()
    return f"{nproc} cores (nproc), {cpu}, Debian {debian}, Python {python}"


def render(rows: list[Row], title: str, notes: list[str]) -> str:
    head = Row("figure", "measured", "ceiling / floor (same runs)", "ratio", "target", "met")
    table = [head, *rows]
    widths = [max(len(getattr(r, f)) for r in table) for f in Row.__slots__]
    lines = [title, ""]
    for i, r in enumerate(table):
        cells = [getattr(r, f).ljust(w) for f, w in zip(Row.__slots__, widths, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines.append("")
    lines.extend(notes)
    return "\n".join(lines)


def num(value: float) -> str:
    return f"{value:,.0f}"


def ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"
