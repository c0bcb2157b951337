"""Human-readable output of the dead-letter CLI: plain-text tables, no colours. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

ERROR_WIDTH = 60


def cut(value: Any, width: int) -> str:
    text = "" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart; the header underlined."""
    cells = [[cut(c, 10_000) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _when(iso: str | None) -> str:
    """``2025-12-13T10:00:00.123456+00:00`` → ``2025-12-13 10:00:00`` (UTC, as stored)."""
    return "" if not iso else iso[:19].replace("T", " ")


def letters(body: dict[str, Any]) -> str:
    rows = [
        (
            d["id"],
            _when(d["first_seen"]),
            d["reason"],
            d["source"],
            d["gateway_id"],
            d.get("machine_id") or "",
            d["readings_count"] if d["readings_count"] else ("raw" if d["has_raw"] else 0),
            _when(d["replayed_at"]) or ("no" if not d["last_replay_error"] else "failed"),
            cut(d["last_replay_error"] or d["error"], ERROR_WIDTH),
        )
        for d in body["dead_letters"]
    ]
    p = body["pagination"]
    footer = f"{p['returned_records']} of {p['total_records']} (offset {p['offset']})" + (
        ", more with --offset" if p["has_more"] else ""
    )
    headers = ("ID", "FIRST SEEN", "REASON", "SOURCE", "GATEWAY", "MACHINE", "READINGS")
    return table((*headers, "REPLAYED", "ERROR"), rows) + "\n" + footer


def stats(body: dict[str, Any]) -> str:
    head = (
        f"total {body['total']}, pending {body['pending']}, replayed {body['replayed']}\n"
        f"oldest {_when(body['oldest']) or '-'}, newest {_when(body['newest']) or '-'}"
    )
    parts = [head]
    for key, title in (("by_reason", "REASON"), ("by_source", "SOURCE")):
        rows = [(g["key"], g["total"], g["pending"]) for g in body[key]]
        parts.append(table((title, "TOTAL", "PENDING"), rows))
    return "\n\n".join(parts)


def letter(body: dict[str, Any]) -> str:
    d = body["dead_letter"]
    keys = (
        "id",
        "message_id",
        "reason",
        "error",
        "source",
        "origin_source",
        "gateway_id",
        "request_id",
        "topic",
        "machine_id",
        "first_seen",
        "archived_at",
        "attempts",
        "replayed_at",
        "replay_count",
        "last_replay_at",
        "last_replay_error",
    )
    width = max(map(len, keys))
    lines = [f"{k.ljust(width)}  {'' if d.get(k) is None else d[k]}" for k in keys]
    if d.get("details"):
        lines += ["", "details:", _json(d["details"])]
    if d.get("readings"):
        lines += ["", f"readings ({len(d['readings'])}):", _json(d["readings"])]
    if d.get("raw") is not None:
        lines += ["", "raw payload:", d["raw"]]
    return "\n".join(lines)


def replay(body: dict[str, Any]) -> str:
    rows = [
        (
            r["id"],
            r["outcome"],
            r.get("readings") or "",
            r.get("reason") or "",
            r.get("error") or "",
        )
        for r in body["results"]
    ]
    summary = f"replayed {body['replayed']}, still invalid {body['still_invalid']}"
    if not rows:
        return summary + " (nothing selected)"
    return table(("ID", "OUTCOME", "READINGS", "REASON", "ERROR"), rows) + "\n" + summary


def purge(body: dict[str, Any]) -> str:
    by = ", ".join(f"{k}: {v}" for k, v in sorted(body["by_reason"].items()))
    return f"deleted {body['deleted']}" + (f" ({by})" if by else "")


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
