"""The alerter's queues: an unreadable message is dead-lettered at once, a readable one decoded."""

from __future__ import annotations

from services.alerter.consuming import decoded
from shared import alert_events


class Delivery:
    """What the alerter reads of an AMQP delivery, and how it settled it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.rejected: bool | None = None

    async def reject(self, requeue: bool = False) -> None:
        self.rejected = not requeue


async def test_an_unreadable_message_is_dead_lettered_and_a_readable_one_decoded() -> None:
    good = Delivery(alert_events.encode("opened", {"id": 1, "machine_id": "m"}))
    assert await decoded(good, alert_events.decode, "notifier") == (  # type: ignore[arg-type]
        "opened",
        {"id": 1, "machine_id": "m"},
    )
    assert good.rejected is None  # left for the caller to ack
    bad = Delivery(b'{"v": 2}')
    assert await decoded(bad, alert_events.decode, "notifier") is None  # type: ignore[arg-type]
    assert bad.rejected is True  # rejected without requeue: to the dead-letter exchange
