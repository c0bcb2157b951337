"""Property tests of the line protocol writer (``shared.lineprotocol``).

For arbitrary unicode tag keys and values, field keys and finite field values, the line that
``line()`` builds is one line (no raw newline: it would split the point) and a small reference
parser, written from InfluxDB's escaping rules, reads back exactly the measurement, tags (sorted,
empty values omitted), fields and timestamp that went in. Fast by default (200 examples);
``HYPOTHESIS_PROFILE=thorough`` runs 5,000.
"""

from __future__ import annotations

import math
import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.writer.batch import reading_line
from shared.lineprotocol import MEASUREMENT, escape_measurement, escape_tag, line

PROFILE = settings(
    max_examples=5000 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# What the escaping must neutralise, made frequent; plus anything unicode (no surrogates:
# they cannot be encoded to the UTF-8 that goes on the wire).
specials = st.sampled_from([" ", ",", "=", "\\", "\n", '"', "\t", "\r", "\x00", "é", "😀"])
texts = st.lists(st.one_of(specials, st.characters(blacklist_categories=["Cs"])), max_size=12).map(
    "".join
)
keys = texts.filter(bool)
finite = st.floats(allow_nan=False, allow_infinity=False)
timestamps = st.integers(min_value=-(2**63) + 2, max_value=2**63 - 1)

_UNESCAPE = {"\\": "\\", ",": ",", "=": "=", " ": " ", "n": "\n"}


def split_unescaped(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split on ``sep`` where it is not escaped by a backslash (kept escaped in the parts)."""
    parts, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep and (maxsplit < 0 or len(parts) < maxsplit):
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            assert i + 1 < len(text), f"dangling backslash in {text!r}"
            nxt = text[i + 1]
            assert nxt in _UNESCAPE, f"unknown escape \\{nxt} in {text!r}"
            out.append(_UNESCAPE[nxt])
            i += 2
        else:
            assert text[i] not in " ,=\n", f"unescaped {text[i]!r} in {text!r}"
            out.append(text[i])
            i += 1
    return "".join(out)


def parse(point: str) -> tuple[str, dict[str, str], dict[str, float], int]:
    """Reference parser: ``measurement[,k=v...] f=v[,f=v...] timestamp``."""
    assert "\n" not in point
    head, field_set, ts = split_unescaped(point, " ")
    measurement, *tag_parts = split_unescaped(head, ",")
    tags = {}
    for part in tag_parts:
        k, v = split_unescaped(part, "=", maxsplit=1)
        tags[unescape(k)] = unescape(v)
    fields = {}
    for part in split_unescaped(field_set, ","):
        k, v = split_unescaped(part, "=", maxsplit=1)
        fields[unescape(k)] = float(v)
    return unescape(measurement.replace("=", "\\=")), tags, fields, int(ts)


@PROFILE
@given(texts)
@example("a\\")
@example("\\ ")
@example("a\\,b=c d")
@example("\n")
def test_escaped_tag_reads_back(value: str) -> None:
    escaped = escape_tag(value)
    assert "\n" not in escaped
    assert unescape(escaped) == value
    assert split_unescaped(escaped, ",") == [escaped]
    assert split_unescaped(escaped, " ") == [escaped]
    assert split_unescaped(escaped, "=") == [escaped]


@PROFILE
@given(
    keys,
    st.dictionaries(keys, texts, max_size=5),
    st.dictionaries(keys, finite, min_size=1, max_size=4),
    timestamps,
)
def test_line_reads_back(
    measurement: str, tags: dict[str, str], fields: dict[str, float], ts: int
) -> None:
    point = line(measurement, tags, fields, ts)
    got_measurement, got_tags, got_fields, got_ts = parse(point)
    assert got_measurement == measurement
    assert got_tags == {k: v for k, v in tags.items() if v != ""}
    assert list(got_tags) == sorted(got_tags)
    assert got_fields == {k: float(v) for k, v in fields.items()}
    assert all(math.isfinite(v) for v in got_fields.values())
    assert got_ts == ts
    assert escape_measurement(measurement) in point


@PROFILE
@given(
    st.fixed_dictionaries(
        {
            "machine_id": st.uuids().map(str),
            "factory_id": texts,
            "sensor_type": texts,
            "location": texts,
            "ts": timestamps,
            "fields": st.dictionaries(
                st.sampled_from(["temperature", "pressure", "speed", "x y"]), finite, min_size=1
            ),
        }
    )
)
def test_writer_lines_carry_the_reading(reading: dict[str, object]) -> None:
    measurement, tags, fields, ts = parse(reading_line(reading))
    assert measurement == MEASUREMENT
    expected = {k: reading[k] for k in ("machine_id", "factory_id", "sensor_type", "location")}
    assert tags == {k: v for k, v in expected.items() if v != ""}
    assert fields == reading["fields"]
    assert ts == reading["ts"]
