"""Realistic sensor values: each machine wanders around its own operating point.

Every value follows a mean-reverting random walk (an Ornstein-Uhlenbeck process) around a set
point that itself drifts slowly, so a plotted series looks like a machine warming up, settling
and wearing rather than white noise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Drift:
    setpoint: float
    spread: float  # typical distance from the set point
    low: float
    high: float
    reversion: float = 0.05  # pull back towards the set point, per step
    setpoint_walk: float = 0.002  # relative drift of the set point, per step
    value: float = field(init=False)

    def __post_init__(self) -> None:
        self.value = self.setpoint

    def step(self, rng: random.Random) -> float:
        self.setpoint += rng.gauss(0, self.setpoint_walk * abs(self.setpoint) + 1e-9)
        self.setpoint = min(max(self.setpoint, self.low), self.high)
        noise = rng.gauss(0, self.spread * (2 * self.reversion) ** 0.5)
        self.value += self.reversion * (self.setpoint - self.value) + noise
        self.value = min(max(self.value, self.low), self.high)
        return self.value


@dataclass(slots=True)
class MachineModel:
    """The three built-in sensors of one machine (°C, kPa, RPM)."""

    temperature: Drift
    pressure: Drift
    speed: Drift

    @classmethod
    def pick(cls, rng: random.Random) -> MachineModel:
        return cls(
            temperature=Drift(rng.uniform(45, 85), 1.5, 10, 140),
            pressure=Drift(rng.uniform(95, 130), 2.0, 60, 250),
            speed=Drift(rng.choice((900, 1200, 1450, 1800, 2900)), 25, 0, 6000),
        )

    def sample(self, rng: random.Random) -> dict[str, float]:
        return {
            "temperature": round(self.temperature.step(rng), 2),
            "pressure": round(self.pressure.step(rng), 2),
            "speed": round(self.speed.step(rng), 1),
        }
