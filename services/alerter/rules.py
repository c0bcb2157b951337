"""Alert rules and their evaluation, pure: no I/O, so every transition is unit-tested.

A threshold rule opens an alert when ``field <comparison> threshold`` has held for
``duration_s`` (reading time, not arrival time) and clears it when the value is back past the
clear threshold (hysteresis: a value hovering at the threshold does not flap). Readings of one
machine are evaluated in reading-time order; one older than the newest already evaluated (late,
or delivered again) changes nothing.

A rule may belong to a factory: it then applies only to machines registered in that factory.
The machine a rule looks at carries its registered factory (``factory_id``), never the factory
a reading's sender claimed.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
SCOPES = ("all", "machine", "sensor_type", "location", "factory")
_SCOPE_KEY = {
    "machine": "machine_id",
    "sensor_type": "sensor_type",
    "location": "location",
    "factory": "factory_id",
}


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    kind: str  # threshold | offline
    severity: str
    scope_type: str = "all"
    scope_value: str | None = None
    field: str | None = None
    comparison: str | None = None
    threshold: float | None = None
    clear_threshold: float | None = None
    duration_s: int = 0
    offline_after_s: int | None = None
    factory_id: str | None = None  # None: every factory

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Rule:
        """A rule as ``alert_rules`` holds it (its other columns are not the evaluator's)."""
        fields: dict[str, Any] = {name: row.get(name) for name in cls.__dataclass_fields__}
        return cls(**{**fields, "id": str(row["id"])})

    def applies(self, machine: dict[str, Any]) -> bool:
        """Whether the rule watches ``machine`` (its registered factory in ``factory_id``)."""
        if self.factory_id is not None and machine.get("factory_id") != self.factory_id:
            return False
        if self.scope_type == "all":
            return True
        return str(machine.get(_SCOPE_KEY[self.scope_type]) or "") == self.scope_value

    def crossed(self, value: float) -> bool:
        assert self.comparison is not None and self.threshold is not None
        return COMPARE[self.comparison](value, self.threshold)

    def back_to_normal(self, value: float) -> bool:
        """Past the clear threshold, on the normal side (the threshold when none is set)."""
        assert self.comparison is not None and self.threshold is not None
        limit = self.threshold if self.clear_threshold is None else self.clear_threshold
        if self.comparison in (">", ">="):
            return value < limit if self.clear_threshold is not None else not self.crossed(value)
        return value > limit if self.clear_threshold is not None else not self.crossed(value)


@dataclass(frozen=True, slots=True)
class Action:
    kind: str  # open | clear
    rule: Rule
    reading: dict[str, Any]
    value: float
    started_ns: int  # when the condition began to hold (open) / the reading time (clear)
    change: int = 0  # the evaluator's change count of this decision (0: not the evaluator's)


@dataclass(slots=True)
class _Track:
    pending_since: int | None = None
    open: bool = False
    changed: int = 0  # the evaluator's change count when this replica last opened/cleared it


# What decides which rules watch a reading: its machine, sensor type, location, registered
# factory, and the names of its fields.
_Series = tuple[str, str, str, str | None, tuple[str, ...]]
_MAX_SERIES = 100_000


@dataclass
class Evaluator:
    """Per-(rule, machine) state of the threshold rules, for the readings this replica sees.

    The rules that watch a reading depend only on what it is from and which fields it has, the
    same for every reading of a series: they are worked out (with :meth:`Rule.applies`, in the
    rules' order) at the series' first reading and kept until the rules change, so a reading
    no rule watches costs a lookup and a reading costs nothing for the rules that ignore it.
    """

    rules: list[Rule] = field(default_factory=list)
    _tracks: dict[tuple[str, str], _Track] = field(default_factory=dict)
    _newest: dict[str, int] = field(default_factory=dict)
    _watching: dict[_Series, tuple[Rule, ...]] = field(default_factory=dict)
    # Bumped by every open/clear decided here: a snapshot of PostgreSQL's open alerts taken
    # before a decision must not undo it (sync_open's ``as_of``).
    changes: int = 0
    # Every decision up to this change count is recorded in PostgreSQL (:meth:`recorded`): a
    # snapshot read from now on shows them. A decision is taken before it is recorded (the
    # snapshot may be read in between), so a snapshot is as of ``settled``, not ``changes``.
    settled: int = 0

    def set_rules(self, rules: Iterable[Rule]) -> None:
        self.rules = [r for r in rules if r.kind == "threshold"]
        keep = {r.id for r in self.rules}
        self._tracks = {k: t for k, t in self._tracks.items() if k[0] in keep}
        self._watching = {}

    def watching(self, reading: dict[str, Any], fields: dict[str, Any]) -> tuple[Rule, ...]:
        """The rules, in order, that watch this reading (its machine in their scope and
        factory, their field among its fields)."""
        series: _Series = (
            str(reading["machine_id"]),
            str(reading.get("sensor_type") or ""),
            str(reading.get("location") or ""),
            reading.get("factory_id"),
            tuple(fields),
        )
        rules = self._watching.get(series)
        if rules is None:
            machine = dict(zip(("machine_id", "sensor_type", "location"), series, strict=False))
            machine["factory_id"] = series[3]
            rules = tuple(r for r in self.rules if r.field in fields and r.applies(machine))
            if len(self._watching) >= _MAX_SERIES:
                self._watching.clear()
            self._watching[series] = rules
        return rules

    def mark_open(self, rule_id: str, machine_id: str) -> None:
        """An alert already open in PostgreSQL (start-up, another replica, a manual state)."""
        self._tracks.setdefault((rule_id, machine_id), _Track()).open = True

    def mark_cleared(self, rule_id: str, machine_id: str) -> None:
        track = self._tracks.get((rule_id, machine_id))
        if track is not None:
            track.open = False
            track.pending_since = None

    def sync_open(self, open_pairs: set[tuple[str, str]], as_of: int | None = None) -> None:
        """Align with the alerts open in PostgreSQL (acknowledged, cleared by hand, fail-over).

        ``as_of``: :attr:`settled` when the snapshot was read; a pair this replica opened or
        cleared after that (or whose change was not recorded yet) keeps its own, newer state."""
        newer = (lambda t: t.changed > as_of) if as_of is not None else (lambda t: False)
        for key, track in self._tracks.items():
            if track.open and key not in open_pairs and not newer(track):
                track.open = False
                track.pending_since = None
        for key in open_pairs:
            track = self._tracks.setdefault(key, _Track())
            if not newer(track):
                track.open = True

    def recorded(self, action: Action) -> None:
        """``action`` is in PostgreSQL (decisions are recorded in the order they are taken)."""
        self.settled = max(self.settled, action.change)

    def undo(self, action: Action) -> None:
        """The action could not be recorded: judge this machine's readings again when they
        are delivered again."""
        machine = str(action.reading["machine_id"])
        self._newest.pop(machine, None)
        track = self._tracks.setdefault((action.rule.id, machine), _Track())
        track.open = action.kind == "clear"
        track.pending_since = action.started_ns if action.kind == "open" else None

    def evaluate(self, reading: dict[str, Any]) -> Sequence[Action]:
        machine, ts = str(reading["machine_id"]), int(reading["ts"])
        newest = self._newest.get(machine)
        if newest is not None and ts <= newest:
            return ()  # late or delivered again: its time has already been judged
        self._newest[machine] = ts
        fields = reading.get("fields") or {}
        actions: list[Action] = []
        for rule in self.watching(reading, fields):
            value = fields[rule.field]
            if not isinstance(value, int | float):
                continue
            track = self._tracks.get((rule.id, machine))
            if track is None:
                track = self._tracks[(rule.id, machine)] = _Track()
            if track.open:
                if rule.back_to_normal(value):
                    track.open = False
                    track.pending_since = None
                    self.changes += 1
                    track.changed = self.changes
                    actions.append(Action("clear", rule, reading, float(value), ts, self.changes))
                continue
            if not rule.crossed(value):
                track.pending_since = None
                continue
            if track.pending_since is None:
                track.pending_since = ts
            if ts - track.pending_since >= rule.duration_s * 1_000_000_000:
                track.open = True
                self.changes += 1
                track.changed = self.changes
                actions.append(
                    Action("open", rule, reading, float(value), track.pending_since, self.changes)
                )
        return actions
