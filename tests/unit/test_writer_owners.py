"""A batch's line → (message, reading) lookup that the writer builds only when asked."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.writer.batch import Owners


@given(st.lists(st.lists(st.booleans(), max_size=6), max_size=6))
def test_owners_point_back_like_a_list_of_pairs(messages: list[list[bool]]) -> None:
    """Each message is a list of readings, True where the reading was malformed (no line)."""
    expected: list[tuple[int, int]] = []
    owners = Owners()
    start = 0
    for m, malformed in enumerate(messages):
        kept = [i for i, bad in enumerate(malformed) if not bad]
        owners.add(m, start, kept if any(malformed) else None)
        expected.extend((m, i) for i in kept)
        start += len(kept)
    assert [owners[k] for k in range(len(expected))] == expected
