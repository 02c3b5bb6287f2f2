"""Fill simulator on hand-made books whose fills are known exactly."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.errors import DataError
from agent.core.impact.estimator import walk_levels
from agent.core.model import ChildOrder, Side
from feeds.book import BookBatch
from replay.simulator import FillSimulator, SimulatorSettings

S = 1_000_000_000
MS = 1_000_000
T0 = 1_743_687_000 * S  # 2025-04-03 13:30 UTC

Levels = Sequence[tuple[float, float]]
ASKS: Levels = [(10.01, 100.0), (10.02, 200.0), (10.03, 300.0)]
BIDS: Levels = [(10.00, 100.0), (9.99, 200.0), (9.98, 300.0)]


def make_book(
    ts: Sequence[int], asks: Levels = ASKS, bids: Levels = BIDS, levels: int = 4, check: bool = True
) -> BookBatch:
    """Every row has the same levels (NaN / 0 beyond the given ones)."""
    n = len(ts)

    def side(lv: Levels) -> tuple[np.ndarray, np.ndarray]:
        px = np.full((n, levels), np.nan)
        sz = np.zeros((n, levels))
        for i, (p, q) in enumerate(lv):
            px[:, i], sz[:, i] = p, q
        return px, sz

    bid_px, bid_sz = side(bids)
    ask_px, ask_sz = side(asks)
    book = BookBatch(
        ts_event=np.asarray(ts, dtype=np.int64),
        symbol=np.full(n, "FROG"),
        action=np.full(n, "A"),
        side=np.full(n, "N"),
        price=np.full(n, np.nan),
        size=np.zeros(n),
        bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px, ask_sz=ask_sz,
    )
    assert not (check and book.validate().bad.any())
    return book


def child(qty: float, limit: float, side: Side = "buy", period: int = 0, parent: str = "P1") -> ChildOrder:
    return ChildOrder(
        child_order_id=f"{parent}:{period}", parent_id=parent, symbol="FROG", side=side,
        quantity=qty, limit_price=limit, period_index=period, ts_event=T0, ts_init=T0,
        remaining_before=qty,
    )


def sim(ts: Sequence[int] = (T0, T0 + S, T0 + 2 * S), **kw: float) -> FillSimulator:
    return FillSimulator(make_book(ts), SimulatorSettings(**kw))


def legs(fills: list) -> list[tuple[float, float]]:
    return [(f.price, f.quantity) for f in fills]


# ------------------------------------------------------------------ walking
def test_execute_buy_within_best_level_fills_once_at_best_ask() -> None:
    fills = sim().execute(child(60, 10.05), T0 - 10 * MS)
    assert legs(fills) == [(10.01, 60.0)]
    assert fills[0].ts_event == T0 and fills[0].parent_id == "P1" and fills[0].child_order_id == "P1:0"


def test_execute_buy_larger_than_best_level_walks_levels_one_fill_per_level() -> None:
    fills = sim().execute(child(350, 10.05), T0 - 10 * MS)
    assert legs(fills) == [(10.01, 100.0), (10.02, 200.0), (10.03, 50.0)]
    assert sum(f.price * f.quantity for f in fills) == pytest.approx(
        walk_levels(np.array([[10.01, 10.02, 10.03]]), np.array([[100.0, 200.0, 300.0]]), 350.0)[1][0]
    )


def test_execute_limit_price_stops_walk_and_cancels_rest() -> None:
    fills = sim().execute(child(350, 10.02), T0 - 10 * MS)
    assert legs(fills) == [(10.01, 100.0), (10.02, 200.0)]


def test_execute_limit_below_best_ask_fills_nothing() -> None:
    s = sim()
    assert s.execute(child(10, 10.00), T0 - 10 * MS) == []
    assert s.stats.filled_children == 0 and s.ledger_size("buy") == 0


def test_execute_beyond_visible_depth_fills_only_the_visible_depth() -> None:
    fills = sim().execute(child(1000, 11.0), T0 - 10 * MS)
    assert sum(f.quantity for f in fills) == 600.0


def test_execute_sell_walks_bids_down_to_limit() -> None:
    s = sim()
    fills = s.execute(child(250, 9.99, side="sell"), T0 - 10 * MS)
    assert legs(fills) == [(10.00, 100.0), (9.99, 150.0)]
    assert s.execute(child(10, 10.01, side="sell", period=1), T0 - 10 * MS) == []


def test_execute_empty_side_fills_nothing() -> None:
    s = FillSimulator(make_book([T0], asks=[]))
    assert s.execute(child(10, 11.0), T0 - 10 * MS) == []


def test_execute_non_positive_quantity_fills_nothing() -> None:
    assert sim().execute(child(0, 11.0), T0) == []


# ------------------------------------------------------------------ latency
def test_snapshot_index_at_returns_first_row_at_or_after_time() -> None:
    s = sim()
    assert [s.snapshot_index_at(t) for t in (T0 - 1, T0, T0 + 1, T0 + 2 * S, T0 + 2 * S + 1)] == [0, 0, 1, 2, 3]


def test_execute_latency_uses_snapshot_at_exactly_decision_plus_latency() -> None:
    ts = [T0, T0 + 5 * MS, T0 + 6 * MS]
    book = BookBatch.concat([
        make_book(ts[:1], asks=[(10.01, 100.0)]),
        make_book(ts[1:2], asks=[(10.02, 100.0)]),
        make_book(ts[2:], asks=[(10.03, 100.0)]),
    ])
    s = FillSimulator(book, SimulatorSettings(latency_ms=5.0))
    fills = s.execute(child(10, 11.0), T0)
    assert legs(fills) == [(10.02, 10.0)] and fills[0].ts_event == T0 + 5 * MS
    fills = s.execute(child(10, 11.0, period=1), T0 + 1)
    assert legs(fills) == [(10.03, 10.0)]


def test_execute_zero_latency_uses_snapshot_at_decision_time() -> None:
    s = sim(latency_ms=0.0)
    assert s.execute(child(10, 11.0), T0)[0].ts_event == T0


def test_execute_no_snapshot_after_arrival_fills_nothing_and_counts_it() -> None:
    s = sim()
    assert s.execute(child(10, 11.0), T0 + 2 * S - 4 * MS) == []
    assert s.stats.no_snapshot == 1


# ------------------------------------------------------- depletion/recovery
def test_execute_second_order_same_snapshot_sees_consumed_depth() -> None:
    s = sim(recovery_half_life_s=0.0)
    s.execute(child(150, 10.05), T0 - 10 * MS)
    fills = s.execute(child(100, 10.05, period=1), T0 - 10 * MS)
    assert legs(fills) == [(10.02, 100.0)]


def test_execute_order_right_after_sees_less_depth_floored_to_whole_shares() -> None:
    s = sim(ts=(T0, T0 + 1 * MS), recovery_half_life_s=30.0)
    s.execute(child(150, 10.05), T0 - 10 * MS)
    # 1 ms later 100 * (1 - 2^(-1/30000)) = 0.0023 shares of the best level are back: not a whole share
    fills = s.execute(child(200, 10.05, period=1), T0 - 4 * MS)  # arrives at T0 + 1 ms
    assert legs(fills) == [(10.02, 150.0), (10.03, 50.0)]


def test_depleted_levels_are_whole_lots_rounded_down() -> None:
    s = sim(ts=(T0, T0 + 30 * S, T0 + 45 * S), recovery_half_life_s=30.0, lot_shares=100.0)
    assert s.depleted_levels(0, "buy")[1][:3].tolist() == [100.0, 200.0, 300.0]
    s.execute(child(200, 10.05), T0 - 10 * MS)  # takes 100 @ 10.01 and 100 @ 10.02
    # after one half-life 50 of each are back: no whole lot at 10.01, one at 10.02
    assert s.depleted_levels(1, "buy")[1][:3].tolist() == [0.0, 100.0, 300.0]
    # 45 s: 100 * 2^-1.5 = 35.4 still out -> 64.6 back, still no whole lot
    assert s.depleted_levels(2, "buy")[1][:3].tolist() == [0.0, 100.0, 300.0]
    fills = s.execute(child(300, 10.05, period=1), T0 + 30 * S - 5 * MS)
    assert legs(fills) == [(10.02, 100.0), (10.03, 200.0)]


def test_level_showing_an_odd_lot_offers_only_its_whole_lots() -> None:
    book = make_book([T0], asks=[(10.01, 150.0), (10.02, 99.0), (10.03, 1000.0)])
    s = FillSimulator(book, SimulatorSettings(lot_shares=100.0))
    assert legs(s.execute(child(400, 10.05), T0 - 10 * MS)) == [(10.01, 100.0), (10.03, 300.0)]


def test_child_with_an_odd_lot_tail_fills_the_tail_as_its_remainder() -> None:
    s = FillSimulator(make_book([T0]), SimulatorSettings(lot_shares=100.0))
    assert legs(s.execute(child(250, 10.05), T0 - 10 * MS)) == [(10.01, 100.0), (10.02, 150.0)]


def test_depleted_levels_after_one_half_life_half_is_back() -> None:
    s = sim(ts=(T0, T0 + 30 * S, T0 + 60 * S), recovery_half_life_s=30.0)
    s.execute(child(150, 10.05), T0 - 10 * MS)
    px, sz = s.depleted_levels(0, "buy")
    assert sz[:3].tolist() == [0.0, 150.0, 300.0]
    _, sz = s.depleted_levels(1, "buy")
    assert sz[:3].tolist() == [50.0, 175.0, 300.0]
    _, sz = s.depleted_levels(2, "buy")
    assert sz[:3].tolist() == [75.0, 187.0, 300.0]  # 187.5 left: whole shares only
    assert px[:3].tolist() == [10.01, 10.02, 10.03]
    bpx, bsz = s.depleted_levels(1, "sell")
    assert bsz[:3].tolist() == [100.0, 200.0, 300.0] and bpx[0] == 10.00


def test_depleted_levels_half_life_zero_full_depth_at_next_snapshot() -> None:
    s = sim(ts=(T0, T0 + 1), recovery_half_life_s=0.0)
    s.execute(child(150, 10.05), T0 - 10 * MS)
    assert s.depleted_levels(1, "buy")[1][:3].tolist() == [100.0, 200.0, 300.0]
    assert s.ledger_size("buy") == 2  # still in force at its own instant
    s.execute(child(10, 10.05, period=1), T0 - 5 * MS + 1)  # fills at T0 + 1
    assert s.ledger_size("buy") == 1  # the first consumption was pruned


def test_depletion_at_same_price_accumulates_with_decay() -> None:
    s = sim(ts=(T0, T0 + 30 * S, T0 + 60 * S), recovery_half_life_s=30.0)
    s.execute(child(80, 10.05), T0 - 5 * MS)
    fills = s.execute(child(40, 10.05, period=1), T0 + 30 * S - 5 * MS)  # 100 - 40 visible
    assert legs(fills) == [(10.01, 40.0)]
    _, sz = s.depleted_levels(2, "buy")
    assert sz[0] == 100.0 - (40.0 + 40.0) / 2


def test_depleted_levels_before_consumption_are_untouched() -> None:
    s = sim(ts=(T0, T0 + S), recovery_half_life_s=30.0)
    s.execute(child(50, 10.05), T0 + S - 5 * MS)
    assert s.depleted_levels(0, "buy")[1][0] == 100.0
    assert s.depleted_levels(1, "buy")[1][0] == 50.0


def test_ledger_prunes_consumption_that_has_recovered() -> None:
    s = sim(ts=(T0, T0 + 3600 * S), recovery_half_life_s=30.0)
    s.execute(child(150, 10.05), T0 - 5 * MS)
    assert s.ledger_size("buy") == 2
    s.execute(child(1, 10.05, period=1), T0 + 3600 * S - 5 * MS)
    assert s.ledger_size("buy") == 1


# --------------------------------------------------------------- bookkeeping
def test_fees_positive_bps_charge_notional_and_keep_fill_price() -> None:
    s = sim(fee_bps=2.0)
    fills = s.execute(child(150, 10.05), T0 - 5 * MS)
    notional = 100 * 10.01 + 50 * 10.02
    assert [f.price for f in fills] == [10.01, 10.02]
    assert s.fees_dollars == pytest.approx(2e-4 * notional)
    s.execute(child(10, 9.95, side="sell", period=0, parent="P2"), T0 - 5 * MS)
    assert s.fees_by_parent == pytest.approx({"P1": 2e-4 * notional, "P2": 2e-4 * 100.0})


def test_fees_negative_bps_is_a_rebate() -> None:
    s = sim(fee_bps=-1.0)
    s.execute(child(100, 10.05), T0 - 5 * MS)
    assert s.fees_dollars == pytest.approx(-1e-4 * 1001.0)


def test_fill_ids_deterministic_and_unique_per_child() -> None:
    a = sim().execute(child(350, 10.05), T0)
    b = sim().execute(child(350, 10.05), T0)
    assert [f.fill_id for f in a] == ["P1:0:f0", "P1:0:f1", "P1:0:f2"]
    assert a == b


def test_execute_same_child_twice_raises_until_reset() -> None:
    s = sim()
    s.execute(child(10, 10.05), T0)
    with pytest.raises(ValueError, match="already executed"):
        s.execute(child(10, 10.05), T0)
    s.reset()
    assert s.fees_dollars == 0.0 and s.ledger_size("buy") == 0
    assert legs(s.execute(child(10, 10.05), T0)) == [(10.01, 10.0)]


def test_stats_count_children_fills_and_events() -> None:
    s = sim()
    s.execute(child(150, 10.05), T0 - 5 * MS)
    s.execute(child(10, 9.0, period=1), T0 + S)
    st_ = s.stats
    assert (st_.children, st_.filled_children, st_.fills) == (2, 1, 2)
    assert st_.filled_quantity == 150.0 and st_.requested_quantity == 160.0
    assert s.events_processed == 3


def test_init_rejects_unsorted_or_multi_symbol_book() -> None:
    book = make_book([T0 + S, T0], check=False)
    with pytest.raises(DataError, match="time order"):
        FillSimulator(book)
    two = BookBatch.concat([make_book([T0]), make_book([T0 + S])])
    two = BookBatch(**{**{f: getattr(two, f) for f in (
        "ts_event", "action", "side", "price", "size", "bid_px", "bid_sz", "ask_px", "ask_sz")},
        "symbol": np.array(["FROG", "TOAD"])})
    with pytest.raises(DataError, match="one symbol"):
        FillSimulator(two)


def test_settings_reject_negative_latency_and_half_life() -> None:
    with pytest.raises(ValueError):
        SimulatorSettings(latency_ms=-1.0)
    with pytest.raises(ValueError):
        SimulatorSettings(recovery_half_life_s=-1.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lot_shares"):
            SimulatorSettings(lot_shares=bad)


# -------------------------------------------------------------- conservation
@settings(max_examples=60, deadline=None)
@given(
    orders=st.lists(
        st.tuples(st.sampled_from(["buy", "sell"]), st.floats(1.0, 800.0),
                  st.floats(9.90, 10.10), st.integers(0, 3 * S)),
        min_size=1, max_size=8,
    ),
    half_life=st.sampled_from([0.0, 0.5, 30.0]),
)
def test_execute_never_overfills_nor_crosses_limit(
    orders: list[tuple[Side, float, float, int]], half_life: float
) -> None:
    s = sim(recovery_half_life_s=half_life)
    for k, (side, qty, limit, t) in enumerate(sorted(orders, key=lambda o: o[3])):
        fills = s.execute(child(qty, limit, side=side, period=k), T0 + t)
        assert sum(f.quantity for f in fills) <= qty + 1e-9
        assert all(f.quantity > 0 for f in fills)
        if side == "buy":
            assert all(f.price <= limit for f in fills)
        else:
            assert all(f.price >= limit for f in fills)
        # never more than what the book showed at that price
        for f in fills:
            book_sz = dict(ASKS if side == "buy" else BIDS)[f.price]
            assert f.quantity <= book_sz + 1e-9


@settings(max_examples=60, deadline=None)
@given(
    orders=st.lists(
        st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 12), st.floats(9.90, 10.10),
                  st.integers(0, 3 * S)),
        min_size=1, max_size=10,
    ),
    lot=st.sampled_from([1.0, 7.0, 50.0, 100.0]),
    half_life=st.sampled_from([0.0, 0.5, 30.0]),
)
def test_execute_fills_whole_lots_never_more_than_the_depleted_depth(
    orders: list[tuple[Side, int, float, int]], lot: float, half_life: float
) -> None:
    s = sim(recovery_half_life_s=half_life, lot_shares=lot)
    taken: list[tuple[Side, float, float, int]] = []  # our fills: side, price, shares, time

    def continuous_depth(side: Side, price: float, t: int) -> float:
        """Book size minus our decayed consumption (the module docstring's formula, recomputed)."""
        shown = dict(ASKS if side == "buy" else BIDS)[price]
        out = 0.0
        for sd, p, q, t0 in taken:
            if sd == side and p == price and t0 <= t:
                out += q * (2.0 ** (-(t - t0) / (half_life * S)) if half_life > 0 else float(t == t0))
        return shown - out

    for k, (side, lots, limit, t) in enumerate(sorted(orders, key=lambda o: o[3])):
        fills = s.execute(child(lots * lot, limit, side=side, period=k), T0 + t)
        assert all(f.quantity > 0 and f.quantity % lot == 0 for f in fills)
        assert sum(f.quantity for f in fills) <= lots * lot
        for j, f in enumerate(fills):
            depth = continuous_depth(side, f.price, f.ts_event)
            assert f.quantity <= depth + 1e-9  # never a share our own earlier orders still hold
            if j < len(fills) - 1:  # a level walked through is taken whole, in whole lots
                assert f.quantity == lot * np.floor(depth / lot + 1e-9)
        taken.extend((side, f.price, f.quantity, f.ts_event) for f in fills)


# ----------------------------------------------------------------- real day
FROG = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"


def test_execute_on_real_day_matches_walk_levels_per_minute() -> None:
    from feeds.files.databento_csv import iter_csv

    if not FROG.exists():  # CI has ../shared/data beside the clone: there the test must run
        if os.environ.get("CI"):
            pytest.fail(f"the real FROG day is expected at {FROG}")
        pytest.skip(f"the real FROG day is not at {FROG}")

    book, _ = BookBatch.concat(list(iter_csv(FROG))).clean()
    s = FillSimulator(book, SimulatorSettings(latency_ms=5.0, recovery_half_life_s=0.0))
    times = np.arange(book.ts_event[0], book.ts_event[-1], 60 * S)
    rows = np.searchsorted(book.ts_event, times + 5 * MS)
    sides: list[Side] = ["buy" if k % 2 == 0 else "sell" for k in range(len(times))]
    mid = book.mid()[rows]
    limits = np.where(np.array(sides) == "buy", mid * 1.01, mid * 0.99)
    got_q, got_n = [], []
    for k, (t, side) in enumerate(zip(times.tolist(), sides, strict=True)):
        fills = s.execute(child(500.0, float(limits[k]), side=side, period=k), t)
        assert all(f.ts_event == book.ts_event[rows[k]] for f in fills)
        got_q.append(sum(f.quantity for f in fills))
        got_n.append(sum(f.quantity * f.price for f in fills))
    buy = np.array(sides) == "buy"
    exp_q, exp_n = np.zeros(len(times)), np.zeros(len(times))
    exp_q[buy], exp_n[buy] = walk_levels(book.ask_px[rows[buy]], book.ask_sz[rows[buy]], 500.0, limits[buy])
    exp_q[~buy], exp_n[~buy] = walk_levels(
        book.bid_px[rows[~buy]], book.bid_sz[rows[~buy]], 500.0, limits[~buy], buy=False
    )
    assert np.asarray(got_q) == pytest.approx(exp_q)
    assert np.asarray(got_n) == pytest.approx(exp_n)
    assert s.stats.filled_children > 300
