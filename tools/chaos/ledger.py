"""What each door was sent and what it answered, one entry per reading.

A reading is identified by (door, index). Its machine and timestamp make it unique in InfluxDB
(the run has a factory id of its own). Storage is flat arrays: a million readings cost ~15 MB.

Outcomes, as the door reported them:

- ``ACCEPTED``: HTTP 202 (every reading of the request), HTTP 207 (the readings of the machines
  not listed as rejected), MQTT PUBACK (every reading of the message);
- ``REJECTED``: HTTP 207/400 listed the reading's machine as rejected (the reason is kept);
- ``UNANSWERED``: sent, but no definitive answer before the run gave up (connection errors or
  503 until the deadline, MQTT message never acknowledged). It may or may not be stored;
  it is neither lost nor duplicated.
"""

from __future__ import annotations

import threading
from array import array
from collections import Counter
from collections.abc import Iterable

PENDING = 0
ACCEPTED = 1
REJECTED = 2
UNANSWERED = 3


class DoorLedger:
    def __init__(self, door: str, machines: list[str]) -> None:
        self.door = door
        self.machines = machines  # index → machine id; -1 in ``machine`` is an unknown machine
        self.ts_us = array("q")
        self.machine = array("i")
        self.phase = bytearray()
        self.status = bytearray()
        self.reasons: Counter[tuple[int, str]] = Counter()  # (phase, reason) → readings
        # (phase, answer) → count: "202", "503", "conn-error", "PUBACK", ... HTTP answers count
        # in the phase they were received in, MQTT messages in the phase of their first reading.
        self.answers: Counter[tuple[int, str]] = Counter()
        self.unknown_machines: dict[int, str] = {}  # reading index → the made-up machine id
        self._lock = threading.Lock()
        self._by_machine: dict[str, array[int]] | None = None

    def __len__(self) -> int:
        return len(self.ts_us)

    def add(self, ts_us: int, machine: int, phase: int) -> int:
        self.ts_us.append(ts_us)
        self.machine.append(machine)
        self.phase.append(phase)
        self.status.append(PENDING)
        return len(self.ts_us) - 1

    def machine_id(self, index: int) -> str:
        m = self.machine[index]
        return self.unknown_machines[index] if m < 0 else self.machines[m]

    def readings_of(self, machine_id: str) -> array[int]:
        """Indices of the readings sent for ``machine_id`` (built once, after the run)."""
        if self._by_machine is None:
            self._by_machine = {}
            for i in range(len(self.ts_us)):
                self._by_machine.setdefault(self.machine_id(i), array("i")).append(i)
        return self._by_machine.get(machine_id, array("i"))

    def answered(self, phase: int, answer: str, times: int = 1) -> None:
        with self._lock:
            self.answers[(phase, answer)] += times

    def accept(self, indices: Iterable[int]) -> None:
        for i in indices:
            self.status[i] = ACCEPTED

    def reject(self, indices: Iterable[int], reason: str) -> None:
        for i in indices:
            self.status[i] = REJECTED
            self.reasons[(self.phase[i], reason)] += 1

    def give_up(self, indices: Iterable[int]) -> None:
        for i in indices:
            if self.status[i] == PENDING:
                self.status[i] = UNANSWERED
