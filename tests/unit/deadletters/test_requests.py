"""Dead-letter API requests: body rules, query parameters, SQL filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.datastructures import QueryParams

from services.query_api.deadletters.routes import letter_out, parse_query
from services.query_api.deadletters.schemas import DeadLetterListParams, PurgeIn, ReplayIn
from services.query_api.deadletters.store import LetterFilter
from shared.http import ApiError


@pytest.mark.parametrize(
    ("body", "selected"),
    [
        ({"ids": [1, 2]}, ([1, 2], None, 100, False)),
        ({"reason": "unknown_machine"}, (None, "unknown_machine", 100, False)),
        (
            {"reason": "unknown_machine", "limit": 1000, "force": True},
            (None, "unknown_machine", 1000, True),
        ),
    ],
)
def test_replay_selects_by_ids_or_by_reason(
    body: dict[str, Any], selected: tuple[Any, ...]
) -> None:
    replay = ReplayIn.model_validate(body)
    assert (replay.ids, replay.reason, replay.limit, replay.force) == selected


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": [1], "reason": "schema"},
        {"ids": []},
        {"ids": list(range(1001))},
        {"reason": "schema", "limit": 0},
        {"reason": "no spaces please"},
        {"reason": "schema", "extra": 1},
        {"ids": [0]},
        {"ids": [2**63]},
    ],
)
def test_replay_refuses_ambiguous_or_oversized_selections(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ReplayIn.model_validate(body)


def test_purge_needs_ids_or_a_filter_never_both_never_nothing() -> None:
    PurgeIn.model_validate({"ids": [3]})
    PurgeIn.model_validate({"replayed": True})
    p = PurgeIn.model_validate({"reason": "schema", "before": "2025-12-01T00:00:00Z"})
    assert p.before == datetime(2025, 12, 1, tzinfo=UTC)
    for body in ({}, {"ids": [3], "reason": "schema"}, {"before": "2025-12-01T00:00:00"}):
        with pytest.raises(ValidationError):
            PurgeIn.model_validate(body)


def test_query_parameters_errors_name_each_parameter() -> None:
    q = parse_query(
        DeadLetterListParams,
        QueryParams("reason=schema&replayed=false&since=2025-12-01T00:00:00%2B01:00&limit=5"),
    )
    assert (q.reason, q.replayed, q.limit, q.offset) == ("schema", False, 5, 0)
    assert q.since is not None and q.since.utcoffset() is not None
    with pytest.raises(ApiError) as caught:
        parse_query(DeadLetterListParams, QueryParams("limit=5000&source=ftp&until=yesterday"))
    assert caught.value.status == 400
    assert {e["parameter"]: e["value"] for e in caught.value.errors or []} == {
        "limit": "5000",
        "source": "ftp",
        "until": "yesterday",
    }


@pytest.mark.parametrize(
    "query", ["gateway_id=%00", "machine_id=a%00b", "reason=%00", "offset=100000000000000000000"]
)
def test_values_postgresql_cannot_hold_are_refused_up_front(query: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_query(DeadLetterListParams, QueryParams(query))
    assert caught.value.status == 400


def test_filter_builds_parameterised_sql() -> None:
    assert LetterFilter().where() == ("TRUE", [])
    since = datetime(2025, 12, 1, tzinfo=UTC)
    where, params = LetterFilter(
        reason="schema", gateway_id="g'; DROP TABLE x", replayed=False, since=since
    ).where()
    assert where == "reason = %s AND gateway_id = %s AND replayed_at IS NULL AND first_seen >= %s"
    assert params == ["schema", "g'; DROP TABLE x", since]
    where, params = LetterFilter(machine_id="m1", replayed=True, before=since).where()
    assert where == (
        "(details->>'machine_id' = %s OR readings @> %s)"
        " AND replayed_at IS NOT NULL AND first_seen < %s"
    )
    assert params[0] == "m1" and params[1].obj == [{"machine_id": "m1"}]


def test_rows_come_out_with_iso_times() -> None:
    when = datetime(2025, 12, 13, 10, tzinfo=UTC)
    row = {"id": 1, "first_seen": when, "replayed_at": None, "error": "x"}
    assert letter_out(row) == {
        "id": 1,
        "first_seen": "2025-12-13T10:00:00+00:00",
        "replayed_at": None,
        "error": "x",
    }
