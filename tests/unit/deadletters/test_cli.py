"""The dead-letter CLI: arguments → API calls, answers → tables."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from tools.deadletters import render
from tools.deadletters.cli import CliError, parse_args, request, token

LETTER = {
    "id": 7,
    "message_id": "m7",
    "reason": "unknown_machine",
    "error": "Unknown machine: 5f0c",
    "source": "mqtt",
    "origin_source": None,
    "gateway_id": "bridge-1",
    "request_id": "r",
    "topic": "factory/f1/machine/5f0c/telemetry",
    "machine_id": "5f0c",
    "readings_count": 0,
    "has_raw": True,
    "first_seen": "2025-12-13T10:00:00.123+00:00",
    "archived_at": "2025-12-13T10:00:01+00:00",
    "attempts": 1,
    "replayed_at": None,
    "replay_count": 0,
    "last_replay_at": None,
    "last_replay_error": None,
}


def test_list_arguments_become_query_parameters() -> None:
    args = parse_args(["list", "--reason", "schema", "--pending", "--gateway", "G", "--json"])
    method, path, params = request(args)
    assert (method, path) == ("GET", "/api/v1/deadletters")
    assert params == {
        "reason": "schema",
        "gateway_id": "G",
        "replayed": "false",
        "limit": 50,
        "offset": 0,
    }
    assert args.json


def test_replay_and_purge_bodies() -> None:
    assert request(parse_args(["replay", "--ids", "1", "2"]))[2] == {"ids": [1, 2], "force": False}
    assert request(parse_args(["replay", "--reason", "schema", "--limit", "5"]))[2] == {
        "reason": "schema",
        "limit": 5,
        "force": False,
    }
    assert request(parse_args(["purge", "--ids", "3", "--yes"]))[2] == {"ids": [3]}
    body = request(parse_args(["purge", "--reason", "schema", "--before", "2025-12-01T00:00:00Z"]))
    assert body == (
        "POST",
        "/api/v1/deadletters/purge",
        {"reason": "schema", "before": "2025-12-01T00:00:00Z"},
    )
    assert request(parse_args(["show", "7"]))[1] == "/api/v1/deadletters/7"


@pytest.mark.parametrize(
    "argv",
    [
        ["replay"],
        ["replay", "--ids", "1", "--reason", "x"],
        ["purge"],
        ["purge", "--ids", "1", "--reason", "x"],
        ["list", "--pending", "--replayed"],
    ],
)
def test_ambiguous_commands_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_token_from_environment_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    args = argparse.Namespace(username=None)
    monkeypatch.setenv("MILLRACE_TOKEN", "abc")
    assert token(args) == "abc"
    monkeypatch.delenv("MILLRACE_TOKEN")
    with pytest.raises(CliError):
        token(args)


def test_list_table() -> None:
    body: dict[str, Any] = {
        "dead_letters": [LETTER, {**LETTER, "id": 8, "readings_count": 3, "has_raw": False}],
        "pagination": {
            "limit": 2,
            "offset": 0,
            "returned_records": 2,
            "total_records": 5,
            "has_more": True,
        },
    }
    lines = render.letters(body).splitlines()
    assert lines[0].split() == [
        "ID",
        "FIRST",
        "SEEN",
        "REASON",
        "SOURCE",
        "GATEWAY",
        "MACHINE",
        "READINGS",
        "REPLAYED",
        "ERROR",
    ]
    assert lines[2].split()[:9] == [
        "7",
        "2025-12-13",
        "10:00:00",
        "unknown_machine",
        "mqtt",
        "bridge-1",
        "5f0c",
        "raw",
        "no",
    ]
    assert lines[3].split()[7] == "3"
    assert lines[-1] == "2 of 5 (offset 0), more with --offset"


def test_stats_show_replay_purge_render() -> None:
    stats = render.stats(
        {
            "total": 3,
            "pending": 2,
            "replayed": 1,
            "oldest": "2025-12-13T10:00:00+00:00",
            "newest": None,
            "by_reason": [{"key": "schema", "total": 3, "pending": 2}],
            "by_source": [{"key": "mqtt", "total": 3, "pending": 2}],
        }
    )
    assert "total 3, pending 2, replayed 1" in stats and "newest -" in stats
    assert "schema  3      2" in stats
    shown = render.letter({"dead_letter": {**LETTER, "raw": "{", "readings": [], "details": {}}})
    assert "reason             unknown_machine" in shown and shown.endswith("raw payload:\n{")
    replayed = render.replay(
        {
            "replayed": 1,
            "still_invalid": 1,
            "results": [
                {"id": 1, "outcome": "replayed", "readings": 2},
                {"id": 2, "outcome": "still_invalid", "reason": "schema", "error": "bad"},
            ],
        }
    )
    assert replayed.splitlines()[-1] == "replayed 1, still invalid 1"
    assert render.purge({"deleted": 3, "by_reason": {"b": 1, "a": 2}}) == "deleted 3 (a: 2, b: 1)"
    assert render.cut("x" * 100, 10) == "x" * 9 + "…"
