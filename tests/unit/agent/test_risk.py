"""Pre-trade checks: refusal reasons, quantity clamps, IOC limit prices on the venue's tick grid."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.core import risk
from agent.core.risk import DEFAULT_TICK_TABLE, InstrumentRules, RiskLimits, VenueRules, tick_for

LIM = RiskLimits(max_snapshot_age_ms=1000.0, limit_slippage_bps=10.0)
ASK_PX = np.array([10.00, 10.01, 10.02, np.nan])
ASK_SZ = np.array([100.0, 200.0, 300.0, 0.0])


@pytest.mark.parametrize(
    ("bid", "bsz", "ask", "asz", "age", "reason"),
    [
        (9.99, 100, 10.0, 100, 0.0, None),
        (10.01, 100, 10.0, 100, 0.0, risk.CROSSED_BOOK),
        (10.0, 100, 10.0, 100, 0.0, risk.LOCKED_BOOK),
        (np.nan, 0, 10.0, 100, 0.0, risk.EMPTY_SIDE),
        (9.99, 100, 10.0, 0, 0.0, risk.EMPTY_SIDE),
        (9.99, 100, 10.0, 100, 1500.0, risk.STALE_BOOK),
    ],
)
def test_book_reject_reason_names_each_refusal(bid, bsz, ask, asz, age, reason) -> None:  # type: ignore[no-untyped-def]
    assert risk.book_reject_reason(bid, bsz, ask, asz, age, LIM) == reason


def test_clamp_never_exceeds_remaining_cap_or_max_child() -> None:
    lim = RiskLimits(max_child_shares=500.0)
    assert risk.clamp_child_quantity(800.0, 1000.0, 700.0, lim) == 500.0
    assert risk.clamp_child_quantity(800.0, 300.0, 700.0, lim) == 300.0
    assert risk.clamp_child_quantity(800.0, 1000.0, 200.0, lim) == 200.0
    assert risk.clamp_child_quantity(-5.0, 1000.0, 200.0, lim) == 0.0


def test_limit_price_covers_the_levels_the_quantity_needs_plus_slippage_rounded_away_from_the_book() -> None:
    # 10.00 * 1.001 = 10.01 exactly (on the grid: stays)
    assert risk.child_limit_price("buy", ASK_PX, ASK_SZ, 100.0, LIM) == 10.01
    # 10.01 * 1.001 = 10.02001 -> up to 10.03 for a buy
    assert risk.child_limit_price("buy", ASK_PX, ASK_SZ, 250.0, LIM) == 10.03
    # deeper than the visible book: the worst visible level, 10.02 * 1.001 = 10.03002 -> 10.04
    assert risk.child_limit_price("buy", ASK_PX, ASK_SZ, 5000.0, LIM) == 10.04
    bid_px = np.array([9.99, 9.98])
    bid_sz = np.array([100.0, 100.0])
    # 9.98 * 0.999 = 9.97002 -> down to 9.97 for a sell
    assert risk.child_limit_price("sell", bid_px, bid_sz, 150.0, LIM) == 9.97


def test_limit_price_is_bounded_by_the_parent_limit_rounded_inside() -> None:
    # a buy's parent limit 10.005 is not on the grid: the child may pay at most 10.00
    assert risk.child_limit_price("buy", ASK_PX, ASK_SZ, 250.0, LIM, parent_limit=10.005) == 10.00
    assert risk.child_limit_price("buy", ASK_PX, ASK_SZ, 250.0, LIM, parent_limit=10.01) == 10.01
    assert risk.child_limit_price("buy", ASK_PX, ASK_SZ, 250.0, LIM, parent_limit=9.99) is None
    # 10.009 rounds down to 10.00 = the best ask: still marketable; 9.999 -> 9.99: not
    assert risk.child_limit_price("buy", ASK_PX, ASK_SZ, 50.0, LIM, parent_limit=10.009) == 10.00
    assert risk.child_limit_price("buy", ASK_PX, ASK_SZ, 50.0, LIM, parent_limit=9.999) is None
    bid_px = np.array([9.99, 9.98])
    assert risk.child_limit_price("sell", bid_px, np.array([1.0, 1.0]), 2.0, LIM, parent_limit=10.0) is None
    # a sell's parent limit 9.985 rounds up to 9.99: the child sells no lower
    assert risk.child_limit_price("sell", bid_px, np.array([1.0, 1.0]), 2.0, LIM, parent_limit=9.985) == 9.99
    assert risk.child_limit_price("sell", bid_px, np.array([1.0, 1.0]), 2.0, LIM, parent_limit=9.991) is None


def test_sub_dollar_prices_use_the_hundredth_cent_tick() -> None:
    px, sz = np.array([0.5012, 0.5013]), np.array([100.0, 100.0])
    # 0.5013 * 1.001 = 0.5018013 -> 0.5019
    assert risk.child_limit_price("buy", px, sz, 150.0, LIM) == 0.5019
    # 0.9995 * 1.001 = 1.0004995: at or above $1 the tick is a cent -> 1.01
    assert risk.child_limit_price("buy", np.array([0.9995]), np.array([100.0]), 10.0, LIM) == 1.01
    # a sub-grid quote just below $1 rounds up onto $1.00 (on both grids)
    flat = RiskLimits(limit_slippage_bps=0.0)
    assert risk.child_limit_price("buy", np.array([0.99995]), np.array([100.0]), 10.0, flat) == 1.0
    # 1.0005 * 0.999 = 0.9994995: below $1 -> down to 0.9994
    assert risk.child_limit_price("sell", np.array([1.0005]), np.array([100.0]), 10.0, LIM) == 0.9994
    assert risk.child_limit_price("sell", np.array([1.005]), np.array([100.0]), 10.0, flat) == 1.0


def test_float_noise_does_not_move_a_price_by_a_tick() -> None:
    rules = InstrumentRules()
    assert 0.1 * 3 == 0.30000000000000004
    assert rules.round_price(0.1 * 3, up=True) == 0.3  # not 0.31
    assert rules.round_price(10.03 - 1e-15, up=False) == 10.03  # not 10.02
    assert rules.round_price(10.0301, up=True) == 10.04 and rules.round_price(10.0299, up=False) == 10.02


def test_tick_for_uses_the_band_of_the_price() -> None:
    assert tick_for(1.0) == 0.01 and tick_for(250.37) == 0.01
    assert tick_for(0.9999) == 0.0001 and tick_for(0.0) == 0.0001
    table = ((0.0, 0.0001), (1.0, 0.01), (1000.0, 0.05))
    assert tick_for(999.99, table) == 0.01 and tick_for(1000.0, table) == 0.05


def test_instrument_rules_validate_and_fixed_tick_overrides_the_table() -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        InstrumentRules(tick_table=((0.0, 0.01), (1.005, 0.01)))
    with pytest.raises(ValueError, match="price 0"):
        InstrumentRules(tick_table=((1.0, 0.01),))
    with pytest.raises(ValueError, match="positive"):
        InstrumentRules(tick=0.0)
    fut = InstrumentRules(tick=0.25)
    assert fut.round_price(4321.3, up=True) == 4321.5 and fut.round_price(4321.3, up=False) == 4321.25
    book = np.array([4321.25, 4321.5])
    assert risk.child_limit_price("buy", book, np.array([5.0, 5.0]), 7.0, LIM, instrument=fut) == 4326.0


def test_venue_rules_per_symbol_override_and_lots() -> None:
    venue = VenueRules(default=InstrumentRules(), symbols=(("ES", InstrumentRules(tick=0.25, lot=1.0)),
                                                            ("BRK", InstrumentRules(lot=100.0))))
    assert venue.instrument("ES").tick == 0.25
    assert venue.instrument("FROG") is venue.default
    assert venue.instrument("BRK").lot_for(1.0) == 100.0
    assert venue.instrument("BRK").lot_for(50.0) == 100.0
    assert venue.instrument("BRK").lot_for(300.0) == 300.0
    assert venue.instrument("BRK").lot_for(30.0) == 300.0  # lcm(100, 30)
    assert InstrumentRules(lot=0.001).lot_for(0.0025) == 0.005
    assert venue.default.lot_for(25.0) == 25.0


# ------------------------------------------------------------------ properties

def _exact_multiple(price: float, tick: float) -> bool:
    """The decimal the price prints as is a whole number of ticks."""
    return Decimal(repr(price)) % Decimal(repr(tick)) == 0


@st.composite
def books(draw: st.DrawFn) -> tuple[str, np.ndarray, np.ndarray, float, float | None, float]:
    side = draw(st.sampled_from(["buy", "sell"]))
    tick = draw(st.sampled_from([0.0001, 0.01]))
    lo, hi = (0.0001, 0.9) if tick == 0.0001 else (1.0, 5000.0)
    best_ticks = draw(st.integers(round(lo / tick) + 20, round(hi / tick)))
    steps = draw(st.lists(st.integers(0, 5), min_size=1, max_size=10))
    off = np.cumsum([0, *steps[1:]]) * (1 if side == "buy" else -1)  # asks ascend, bids descend
    px = np.round((best_ticks + off) * tick, 6)
    if draw(st.booleans()):  # sub-grid quotes (midpoints, hundredths of a tick) still give on-grid limits
        px = np.round(px + draw(st.integers(1, 99)) * tick / 100 * (1 if side == "buy" else -1), 8)
    sz = np.array(draw(st.lists(st.floats(1, 5000), min_size=len(px), max_size=len(px))))
    qty = draw(st.floats(1, 30_000))
    parent_limit = draw(st.none() | st.floats(float(px[0]) * 0.9, float(px[0]) * 1.1))
    bps = draw(st.floats(0, 100))
    return side, px, sz, qty, parent_limit, bps


@settings(max_examples=600, deadline=None, derandomize=True)
@given(books())
def test_property_limit_on_grid_marketable_within_parent_limit(case: tuple) -> None:  # type: ignore[type-arg]
    side, px, sz, qty, parent_limit, bps = case
    lim = RiskLimits(limit_slippage_bps=bps)
    limit = risk.child_limit_price(side, px, sz, qty, lim, parent_limit)
    best = float(px[0])
    rules = InstrumentRules()
    if limit is None:  # only when the parent limit, on the grid, is not marketable
        assert parent_limit is not None
        bound = rules.round_price(parent_limit, up=side == "sell")
        assert (bound < best) if side == "buy" else (bound > best)
        return
    tick = tick_for(limit, DEFAULT_TICK_TABLE)
    assert _exact_multiple(limit, tick), limit
    assert abs(limit / tick - round(limit / tick)) < 1e-9
    assert risk.on_grid(limit, tick)
    if side == "buy":
        assert limit >= best - 1e-9 * best  # marketable: crosses the best ask (a book price may carry float noise)
        if parent_limit is not None:
            assert limit <= parent_limit + 1e-12
        else:  # rounded away from the book: at least the raw limit, less than a tick above it
            worst = float(px[min(int(np.searchsorted(np.cumsum(sz), qty)), len(px) - 1)])
            raw = worst * (1 + bps * 1e-4)
            assert raw - 1e-9 <= limit < raw + tick_for(raw) + 1e-9
    else:
        assert limit <= best + 1e-9 * best
        if parent_limit is not None:
            assert limit >= parent_limit - 1e-12
        else:
            worst = float(px[min(int(np.searchsorted(np.cumsum(sz), qty)), len(px) - 1)])
            raw = worst * (1 - bps * 1e-4)
            assert raw - tick_for(raw) - 1e-9 < limit <= raw + 1e-9


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 1_000_000), st.sampled_from([0.01, 0.0001]), st.booleans())
def test_property_round_price_of_a_grid_price_is_itself(n: int, tick: float, up: bool) -> None:
    price = float(Decimal(n) * Decimal(repr(tick)))
    assume(tick_for(price) == tick)
    assert InstrumentRules().round_price(price, up=up) == price
    assert abs(price * round(1 / tick) - n) < 1e-9  # e.g. limit * 100 is an integer for a cent tick


def test_fillable_within_counts_visible_depth_up_to_the_limit() -> None:
    assert risk.fillable_within("buy", ASK_PX, ASK_SZ, 10.01) == 300.0
    assert risk.fillable_within("buy", ASK_PX, ASK_SZ, 9.0) == 0.0


def _limit_price_reference(side, px, sz, quantity, limits, parent_limit):  # type: ignore[no-untyped-def]
    """The vectorised formula :func:`risk.child_limit_price` replaced (cumsum + searchsorted)."""
    usable = (sz > 0) & np.isfinite(px)
    if not usable.any():
        return None
    p, s = px[usable], sz[usable]
    worst = float(p[min(int(np.searchsorted(np.cumsum(s), quantity, side="left")), len(p) - 1)])
    slip, buy = limits.limit_slippage_bps * 1e-4, side == "buy"
    rules = InstrumentRules()
    limit = rules.round_price(worst * (1 + slip) if buy else worst * (1 - slip), up=buy)
    if parent_limit is not None:
        bound = rules.round_price(parent_limit, up=not buy)
        if (buy and p[0] > bound) or (not buy and p[0] < bound):
            return None
        limit = min(limit, bound) if buy else max(limit, bound)
    return limit


@settings(max_examples=400, deadline=None)
@given(px=st.lists(st.one_of(st.floats(0.5, 200.0), st.just(float("nan")), st.just(float("inf"))),
                   min_size=1, max_size=10),
       sz=st.lists(st.one_of(st.floats(0.0, 5_000.0), st.just(float("nan"))), min_size=10, max_size=10),
       quantity=st.floats(0.0, 20_000.0), side=st.sampled_from(["buy", "sell"]),
       parent_limit=st.one_of(st.none(), st.floats(0.5, 200.0)))
def test_limit_price_is_the_cumulative_depth_formula(px, sz, quantity, side, parent_limit) -> None:  # type: ignore[no-untyped-def]
    """The scalar level walk gives exactly the numbers of the cumsum/searchsorted formula."""
    p, s = np.asarray(px, dtype=np.float64), np.asarray(sz[: len(px)], dtype=np.float64)
    assert risk.child_limit_price(side, p, s, quantity, LIM, parent_limit) == \
        _limit_price_reference(side, p, s, quantity, LIM, parent_limit)
