"""``feeds.ports.next_offsets``: what a consumer commits after a batch."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from feeds.ports import Record, TopicPartition, next_offsets

_records = st.lists(st.tuples(st.sampled_from(["md", "fills"]), st.integers(0, 3), st.integers(0, 10_000)),
                    max_size=60)


@given(_records)
def test_next_offsets_is_the_largest_offset_plus_one_per_partition(rows: list[tuple[str, int, int]]) -> None:
    recs = [Record(t, p, o, None, b"v") for t, p, o in rows]  # any order, as a merge of partitions may give
    expected: dict[TopicPartition, int] = {}
    for t, p, o in rows:
        tp = TopicPartition(t, p)
        expected[tp] = max(expected.get(tp, 0), o + 1)
    got = next_offsets(recs)
    assert got == expected
    assert all(type(tp) is TopicPartition for tp in got)


def test_next_offsets_of_nothing_is_empty() -> None:
    assert next_offsets([]) == {}
