"""BookBatch validation (the one book validator): every rejection reason, rule order, time order
across chunks, shape checks."""

from __future__ import annotations

import numpy as np
import pytest

from feeds.book import BOOK_RULES, RULE_TEXT, BookBatch, check_books, merge_rejections, pad_levels
from feeds.reasons import BOOK_REASONS

NS = 1_000_000_000


def make(rows: list[dict[str, object]], levels: int = 2) -> BookBatch:
    """Rows default to a healthy 2-level book: bids 10.00/9.99, asks 10.01/10.02, 100 shares each."""
    n = len(rows)
    base = {"ts": 0, "sym": "X", "action": "A", "side": "B", "price": 10.0, "size": 1.0,
            "bid_px": [10.0, 9.99], "bid_sz": [100.0, 100.0], "ask_px": [10.01, 10.02], "ask_sz": [100.0, 100.0]}
    full = [{**base, **r} for r in rows]
    return BookBatch(
        ts_event=np.array([r["ts"] for r in full], dtype=np.int64),
        symbol=np.array([r["sym"] for r in full]),
        action=np.array([r["action"] for r in full]),
        side=np.array([r["side"] for r in full]),
        price=np.array([r["price"] for r in full], dtype=float),
        size=np.array([r["size"] for r in full], dtype=float),
        bid_px=np.array([r["bid_px"] for r in full], dtype=float).reshape(n, levels),
        bid_sz=np.array([r["bid_sz"] for r in full], dtype=float).reshape(n, levels),
        ask_px=np.array([r["ask_px"] for r in full], dtype=float).reshape(n, levels),
        ask_sz=np.array([r["ask_sz"] for r in full], dtype=float).reshape(n, levels),
    )


CASES = {
    "non_finite": {"bid_px": [np.inf, 9.99]},
    "non_positive_price": {"ask_px": [-1.0, 10.02], "bid_px": [-2.0, -3.0]},
    "negative_size": {"bid_sz": [-5.0, 100.0]},
    "crossed_book": {"bid_px": [10.05, 9.99]},
    "locked_book": {"bid_px": [10.01, 9.99]},
    "levels_out_of_order": {"ask_px": [10.01, 10.00]},
}


@pytest.mark.parametrize("reason", sorted(CASES))
def test_validate_flags_each_reason_on_the_bad_row_only(reason: str) -> None:
    b = make([{"ts": 1}, {"ts": 2, **CASES[reason]}, {"ts": 3}])
    v = b.validate()
    assert list(v.reason) == ["", reason, ""]
    assert v.counts() == {reason: 1}


def test_every_reason_is_covered_by_a_case_and_every_rule_has_a_text() -> None:
    assert set(CASES) | {"ts_backwards"} == set(BOOK_REASONS) == set(BOOK_RULES)
    assert len(RULE_TEXT) == len(BOOK_RULES)


def test_ts_backwards_is_measured_against_the_running_maximum() -> None:
    b = make([{"ts": 1}, {"ts": 2}, {"ts": 100}, {"ts": 3}, {"ts": 4}, {"ts": 101}])
    clean, rejected = b.clean()
    assert list(clean.ts_event) == [1, 2, 100, 101]
    assert rejected == {"ts_backwards": 2}


def test_ts_backwards_is_per_symbol_and_uses_last_ts_from_earlier_chunks() -> None:
    b = make([{"ts": 5, "sym": "A"}, {"ts": 1, "sym": "B"}, {"ts": 6, "sym": "A"}])
    assert b.validate().counts() == {}
    v = b.validate(last_ts={"A": 10, "B": 0})
    assert list(v.reason) == ["ts_backwards", "", "ts_backwards"]
    assert b.latest_ts() == {"A": 6, "B": 1}


def test_missing_timestamp_is_rejected_as_non_finite_even_on_the_first_row() -> None:
    b = make([{"ts": np.iinfo(np.int64).min}, {"ts": 1}])
    assert list(b.validate().reason) == ["non_finite", ""]


def test_empty_levels_at_the_end_are_valid_but_a_gap_is_out_of_order() -> None:
    ok = make([{"bid_px": [10.0, np.nan], "bid_sz": [100.0, 0.0]}])
    gap = make([{"bid_px": [np.nan, 9.99], "bid_sz": [0.0, 100.0]}])
    assert ok.validate().counts() == {}
    assert gap.validate().counts() == {"levels_out_of_order": 1}


def test_a_level_with_a_price_is_present_whatever_its_size() -> None:
    """Size 0 with a price is a level (the wire lists it): ordered, priced > 0, part of the touch."""
    b = make([
        {"bid_px": [10.0, 9.99], "bid_sz": [0.0, 100.0]},  # a zero-size top: no gap
        {"bid_px": [9.98, 9.99], "bid_sz": [100.0, 0.0]},  # out of order even with size 0
        {"ask_px": [0.0, 10.02], "ask_sz": [0.0, 100.0]},  # a price of 0 is not an empty level
        {"bid_px": [10.01, 9.99], "bid_sz": [0.0, 100.0]},  # a zero-size touch still locks
        {"bid_px": [10.0, np.nan], "bid_sz": [100.0, 5.0]},  # a size without a price
    ])
    assert list(b.validate().reason) == ["", "levels_out_of_order", "non_positive_price", "locked_book",
                                         "non_finite"]


def test_trade_without_price_is_refused_last_but_a_clear_without_price_is_fine() -> None:
    b = make([{"action": "T", "price": np.nan}, {"action": "R", "price": np.nan, "side": "N",
              "bid_px": [np.nan, np.nan], "bid_sz": [0.0, 0.0], "ask_px": [np.nan, np.nan], "ask_sz": [0.0, 0.0]},
              {"action": "T", "price": np.nan, "bid_px": [10.05, 9.99]}, {"action": "T", "price": 0.0}])
    assert list(b.validate().reason) == ["non_positive_price", "", "crossed_book", "non_positive_price"]


def test_rules_apply_in_their_order() -> None:
    """Each row breaks rule k and every later rule it can: the verdict is rule k."""
    rows = [
        {"bid_px": [np.inf, -1.0], "bid_sz": [-1.0, 1.0], "action": "T", "price": np.nan},
        {"bid_px": [10.05, -1.0], "bid_sz": [-1.0, 1.0], "action": "T", "price": np.nan},
        {"bid_px": [10.05, 10.06], "bid_sz": [-1.0, 1.0], "action": "T", "price": np.nan},
        {"bid_px": [10.05, 10.06], "action": "T", "price": np.nan},
        {"bid_px": [10.05, 9.99], "action": "T", "price": np.nan},
        {"bid_px": [10.01, 9.99], "action": "T", "price": np.nan},
        {"action": "T", "price": np.nan},
    ]
    codes = check_books(*(lambda b: (b.price, b.size, b.action, b.bid_px, b.bid_sz, b.ask_px, b.ask_sz))(make(rows)))
    assert codes.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert [BOOK_RULES[c - 1] for c in codes] == list(BOOK_RULES[:7])


def test_pad_levels_full_ragged_and_empty_rows() -> None:
    np.testing.assert_array_equal(pad_levels([[1.0, 2.0], [3.0, 4.0]], np.nan, 2), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(pad_levels([[1.0], [], [2.0, 3.0]], np.nan, 2),
                                  [[1, np.nan], [np.nan, np.nan], [2, 3]])
    assert pad_levels([], 0.0, 3).shape == (0, 3)


def test_first_applicable_reason_wins() -> None:
    b = make([{"bid_px": [10.05, 9.99], "bid_sz": [-1.0, 100.0]}])  # crossed and negative size
    assert b.validate().counts() == {"negative_size": 1}


def test_constructor_rejects_mismatched_shapes() -> None:
    b = make([{}, {}])
    with pytest.raises(ValueError, match="ask_sz"):
        BookBatch(ts_event=b.ts_event, symbol=b.symbol, action=b.action, side=b.side, price=b.price,
                  size=b.size, bid_px=b.bid_px, bid_sz=b.bid_sz, ask_px=b.ask_px, ask_sz=b.ask_sz[:, :1])


def test_concat_take_and_symbols_keep_rows_in_order() -> None:
    a = make([{"ts": 1, "sym": "B"}, {"ts": 2, "sym": "A"}])
    c = BookBatch.concat([a, a[1:]])
    assert len(c) == 3 and list(c.symbol) == ["B", "A", "A"]
    assert c.symbols() == ["B", "A"]
    assert len(c.for_symbol("A")) == 2
    assert c[0].ts_event.tolist() == [1]


def test_merge_rejections_adds_counts() -> None:
    total = {"crossed_book": 1}
    assert merge_rejections(total, {"crossed_book": 2, "ts_backwards": 1}) == {"crossed_book": 3, "ts_backwards": 1}


def test_taken_and_stacked_batches_are_whole_batches() -> None:
    """take / [] / concat skip the constructor's checks (a hot path); what they return must still be
    a consistent batch, and an int index still means one row, not a 0-d column."""
    b = make([{"ts": i, "price": 10.0 + i} for i in range(6)])
    for part in (b[2], b[-1], b.take(np.int64(3)), b[1:4], b.take(np.array([0, 5])), b.take(b.price > 12.0)):
        rebuilt = BookBatch(**{f: getattr(part, f) for f in BookBatch.__dataclass_fields__})  # the checked way
        assert len(rebuilt) == len(part) and part.bid_px.shape == (len(part), 2)
    assert b[2].price.tolist() == [12.0] and b[-1].ts_event.tolist() == [5]
    both = BookBatch.concat([b[:2], b[4:]])
    assert both.ts_event.tolist() == [0, 1, 4, 5] and both.ask_sz.shape == (4, 2) and both.ts_recv is None
    with pytest.raises(IndexError):
        b.take(np.array([True, False]))  # a mask of the wrong length is refused, not silently misread
