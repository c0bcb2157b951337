"""The short soak (``python -m tools.soak`` is the long one): many connections per door, tokens
that expire during the run, revocations, a signing-key rotation, valid and invalid requests
mixed. Every answer must be the one its token calls for, none a 5xx, and no log line of the run
may carry a token or secret it issued."""

from __future__ import annotations

import time

import pytest

from tools.soak.cli import _parser, report, soak
from tools.soak.load import Outcome
from tools.soak.logscan import log_offsets, scan_logs
from tools.soak.stack import RUN, private_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


async def test_doors_answer_no_5xx_and_the_right_401_403_under_concurrent_churn(
    urls: dict[str, str],
) -> None:
    args = _parser().parse_args(
        ["--duration", "20", "--connections", "6", "--token-ttl", "5", "--revoke-every", "1.5"]
    )
    outcome = Outcome()
    marks = log_offsets(RUN)
    started = time.monotonic()
    with private_stack(args.base_port) as stack:
        # In the test's own event loop: asyncio.run() would leave the thread without one.
        session = await soak(stack, args, outcome)
    report(outcome, session, time.monotonic() - started)

    assert outcome.five_xx == 0, outcome.violations
    assert outcome.violation_count == 0, outcome.violations
    wants = {(door, want) for door, _, want, _ in outcome.counts}
    # The run met every situation it exists for, at every door it covers.
    for door in ("ingest", "query"):
        assert {(door, "ok"), (door, "401 expired"), (door, "401 revoked"), (door, "403")} <= wants
    assert ("auth", "ok") in wants
    assert session.rotations == 1, "the key was not rotated"
    assert session.revocations >= 5, f"only {session.revocations} revocations"
    problems = scan_logs(RUN, marks, outcome.issued, error_files=("soak-",))
    assert not problems, problems
