"""The project's error hierarchy. Catch these by name; wrap library errors with ``from e``."""

from __future__ import annotations


class MillraceError(Exception):
    """Base of every error this project raises on purpose."""


class DependencyUnavailable(MillraceError):
    """A dependency (broker, database, cache) cannot be reached right now; retry later."""

    def __init__(self, dependency: str, detail: str = "") -> None:
        super().__init__(f"{dependency} unavailable{': ' + detail if detail else ''}")
        self.dependency = dependency


class BrokerUnavailable(DependencyUnavailable):
    def __init__(self, detail: str = "") -> None:
        super().__init__("rabbitmq", detail)


class InfluxUnavailable(DependencyUnavailable):
    """InfluxDB is down, slow, or answered 5xx: the write may succeed if retried."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("influxdb", detail)


class InfluxRejected(MillraceError):
    """InfluxDB answered 4xx to a write: retrying the same body can never succeed."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"influxdb rejected the write ({status}): {detail}")
        self.status = status
        self.detail = detail


class InfluxQueryError(MillraceError):
    """An InfluxQL statement failed (bad statement or server-side error)."""
