"""EngineDriver's split of a market-data batch by symbol (``agent.live.engine_step._by_symbol``)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.live.engine_step import _by_symbol
from feeds.book import BookBatch


def _batch(symbols: list[str]) -> BookBatch:
    n = len(symbols)
    lv = np.arange(10)
    mid = 100.0 + np.arange(n)[:, None] * 0.01
    return BookBatch(
        ts_event=np.arange(n, dtype=np.int64) * 1000, symbol=np.array(symbols, dtype=object),
        action=np.array(["T" if i % 3 == 0 else "A" for i in range(n)]), side=np.full(n, "B"),
        price=np.where(np.arange(n) % 3 == 0, 100.0, np.nan), size=np.arange(n, dtype=np.float64),
        bid_px=mid - 0.01 - lv * 0.01, bid_sz=np.full((n, 10), 5.0), ask_px=mid + 0.01 + lv * 0.01,
        ask_sz=np.full((n, 10), 7.0))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["AAA", "B", "CC", "Z9", "a"]), min_size=1, max_size=60))
def test_split_keeps_every_row_once_in_order_with_symbols_in_order_of_first_appearance(symbols: list[str]) -> None:
    md = _batch(symbols)
    parts = _by_symbol(md)
    names = [name for name, _ in parts]
    assert names == list(dict.fromkeys(symbols))  # each symbol once, by first appearance
    for name, rows in parts:
        want = md.take(md.symbol == name)
        for col in ("ts_event", "size", "bid_px", "ask_sz", "action"):
            assert np.array_equal(getattr(rows, col), getattr(want, col)), (name, col)
        assert set(rows.symbol.tolist()) == {name}
    assert sum(len(rows) for _, rows in parts) == len(md)
