"""The one table: per fault phase and in total, what was sent, accepted, rejected, stored,
lost (accepted but not stored) and duplicated (stored more than once, stored though rejected,
or stored without being in the ledger at all)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from tools.chaos.ledger import ACCEPTED, REJECTED, UNANSWERED, DoorLedger
from tools.chaos.verify import Stored


@dataclass(slots=True)
class Row:
    phase: str
    seconds: float | None = None
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    unanswered: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)

    def add(self, other: Row) -> None:
        for name in ("sent", "accepted", "rejected", "unanswered", "stored", "lost", "duplicated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons.update(other.reasons)
        self.answers.update(other.answers)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reasons"] = dict(self.reasons)
        out["answers"] = dict(self.answers)
        return out


def tally(
    ledgers: list[DoorLedger], stored: Stored, phases: list[str], seconds: list[float]
) -> tuple[list[Row], dict[str, Row], Row]:
    """Rows per phase, per door totals, and the grand total."""
    rows = [Row(name, round(s, 1)) for name, s in zip(phases, seconds, strict=True)]
    doors = {ledger.door: Row(f"total {ledger.door}") for ledger in ledgers}
    for ledger in ledgers:
        copies = stored.copies[ledger.door]
        per_phase = [Row(name) for name in phases]
        for i, status in enumerate(ledger.status):
            row = per_phase[ledger.phase[i]]
            n = copies[i]
            row.sent += 1
            row.accepted += status == ACCEPTED
            row.rejected += status == REJECTED
            row.unanswered += status == UNANSWERED
            row.stored += n > 0
            row.lost += status == ACCEPTED and n == 0
            row.duplicated += max(0, n - 1) + (n if status == REJECTED else 0)
        for (phase, reason), count in ledger.reasons.items():
            per_phase[phase].reasons[reason] += count
        for (phase, answer), count in ledger.answers.items():
            per_phase[max(phase, 0)].answers[f"{ledger.door} {answer}"] += count
        for row, part in zip(rows, per_phase, strict=True):
            row.add(part)
            doors[ledger.door].add(part)
    total = Row("total")
    for door_row in doors.values():
        total.add(door_row)
    foreign = sum(stored.foreign.values())
    total.duplicated += foreign
    if foreign:
        total.reasons["stored, not in the ledger"] += foreign
    return rows, doors, total


def _answers(row: Row) -> str:
    http = sorted((a.split(" ", 1)[1], n) for a, n in row.answers.items() if a.startswith("http "))
    published = row.answers.get("mqtt published", 0)
    acked = row.answers.get("mqtt PUBACK", 0)
    parts = []
    if http:
        parts.append("HTTP " + " ".join(f"{a}x{n}" for a, n in http))
    if published:
        parts.append(f"MQTT {acked}/{published} PUBACK")
    return "; ".join(parts)


def _reasons(row: Row) -> str:
    return ", ".join(f"{r} {n}" for r, n in sorted(row.reasons.items())) or "-"


def render(rows: list[Row], doors: dict[str, Row], total: Row) -> str:
    head = (
        "phase",
        "s",
        "sent",
        "accepted",
        "rejected",
        "stored",
        "lost",
        "duplicated",
        "door answers",
        "rejected (reasons)",
    )
    body = []
    for row in [*rows, *doors.values(), total]:
        body.append(
            (
                row.phase,
                "" if row.seconds is None else f"{row.seconds:.0f}",
                f"{row.sent:,}",
                f"{row.accepted:,}",
                f"{row.rejected:,}",
                f"{row.stored:,}",
                f"{row.lost:,}",
                f"{row.duplicated:,}",
                _answers(row),
                _reasons(row),
            )
        )
    widths = [max(len(r[c]) for r in (head, *body)) for c in range(len(head))]
    numeric = {1, 2, 3, 4, 5, 6, 7}

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [fmt(head), rule]
    for i, cells in enumerate(body):
        if i == len(rows):
            lines.append(rule)
        lines.append(fmt(cells))
    if total.unanswered:
        lines.append(
            f"({total.unanswered:,} readings never got a definitive answer: neither accepted"
            " nor rejected, so neither lost nor duplicated whatever InfluxDB holds)"
        )
    return "\n".join(lines)
