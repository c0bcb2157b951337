"""The query API's parameter models: one parse (``parse_query``), the refusals they give."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.query_api.alerts.schemas import RuleIn
from services.query_api.params import MachineListParams, StatusParams, SummaryParams
from shared.http import ApiError
from shared.params import parse_query

NOW = datetime(2025, 12, 13, 12, 0, tzinfo=UTC)
CONTEXT = {"known_fields": ["temperature", "speed"], "now": NOW, "default_range_s": 86_400}


def refused(model: Any, params: dict[str, str], context: Any = None) -> dict[str, str]:
    with pytest.raises(ApiError) as exc:
        parse_query(model, params, context)
    assert exc.value.status == 400
    return {e["parameter"]: e["error"] for e in exc.value.errors or []}


def test_empty_filters_filter_nothing_and_bad_ones_are_named() -> None:
    q = parse_query(
        StatusParams, {"location": "", "status": "", "sensor_type": "", "factory_id": ""}
    )
    assert q.filters() == {}
    q = parse_query(StatusParams, {"status": "error", "factory_id": "plant-1"})
    assert q.filters() == {"status": "error", "factory_id": "plant-1"}
    errors = refused(StatusParams, {"status": "broken", "factory_id": "no spaces"})
    assert errors["status"] == "Must be one of: active, inactive, maintenance, error"
    assert "factory id" in errors["factory_id"]


def test_machine_list_bounds_each_parameter() -> None:
    errors = refused(MachineListParams, {"limit": "0", "offset": "x"})
    assert errors == {"limit": "Must be between 1 and 1000", "offset": "Must be an integer"}
    q = parse_query(MachineListParams, {"limit": " 5 ", "offset": ""})
    assert (q.limit, q.offset) == (5, 0)


def test_summary_knows_its_fields_and_orders_its_range() -> None:
    errors = refused(SummaryParams, {"field": "colour", "interval": "2h"}, CONTEXT)
    assert set(errors) == {"location", "field", "interval"}
    assert errors["field"] == "Must be one of: temperature, speed"
    backwards = {
        "location": "L",
        "start_time": "2025-12-13T10:00:00Z",
        "end_time": "2025-12-12T10:00:00Z",
    }
    assert refused(SummaryParams, backwards, CONTEXT) == {"start_time": "Must be before end_time"}
    q = parse_query(SummaryParams, {"location": "L"}, {**CONTEXT, "default_range_s": 3600})
    assert q.window({**CONTEXT, "default_range_s": 3600}) == (NOW.replace(hour=11), NOW)


def test_a_rule_of_a_factory_scope_belongs_to_that_factory() -> None:
    body = {"name": "hot", "field": "temperature", "comparison": ">", "threshold": 90}
    assert RuleIn(**body, scope_type="factory", scope_value="plant-1").factory_id == "plant-1"
    assert RuleIn(**body, factory_id="plant-2").factory_id == "plant-2"
    with pytest.raises(ValueError, match="factory the scope names"):
        RuleIn(**body, scope_type="factory", scope_value="plant-1", factory_id="plant-2")
