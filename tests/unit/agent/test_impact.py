"""Cost curves from the book, the constrained fits and the online impact estimator."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import lsq_linear

from agent.core.errors import DataError
from agent.core.forecast.profile import IntradayProfile
from agent.core.impact.estimator import (
    GAMMA_FLOOR,
    OnlineImpactEstimator,
    cost_curves,
    curves_from_book,
    default_sizes,
    depth_sizes,
    ew_weights,
    fit_power_law,
    fit_quadratic,
    walk_levels,
)
from feeds.book import BookBatch
from tests.unit.agent.books import NS, T0

# ------------------------------------------------------------------ helpers


def random_book(n: int, seed: int = 0, levels: int = 10, t0: int = T0, dt_s: float = 1.0) -> BookBatch:
    """Irregular random books: random tick gaps and sizes, some trailing empty levels."""
    rng = np.random.default_rng(seed)
    mid = 20.0 + np.cumsum(rng.normal(0, 0.01, n))
    half = 0.01 * rng.integers(1, 5, n)
    ask_px = np.round(mid[:, None] + half[:, None] + 0.01 * np.cumsum(rng.integers(0, 4, (n, levels)), 1)
                      + 0.01 * np.arange(levels), 2)
    bid_px = np.round(mid[:, None] - half[:, None] - 0.01 * np.cumsum(rng.integers(0, 4, (n, levels)), 1)
                      - 0.01 * np.arange(levels), 2)
    ask_sz = rng.integers(1, 20, (n, levels)) * 50.0
    bid_sz = rng.integers(1, 20, (n, levels)) * 50.0
    for px, sz in ((ask_px, ask_sz), (bid_px, bid_sz)):
        shown = rng.integers(3, levels + 1, n)
        empty = np.arange(levels)[None, :] >= shown[:, None]
        px[empty], sz[empty] = np.nan, 0.0
    ts = t0 + np.cumsum(rng.exponential(dt_s, n) * NS).astype(np.int64)
    action = np.where(rng.random(n) < 0.2, "T", "A")
    return BookBatch(ts_event=ts, symbol=np.full(n, "TEST"), action=action, side=np.full(n, "A"),
                     price=np.where(action == "T", ask_px[:, 0], bid_px[:, 0]),
                     size=rng.integers(1, 10, n) * 100.0, bid_px=bid_px, bid_sz=bid_sz,
                     ask_px=ask_px, ask_sz=ask_sz)


def one_row(bids: list[tuple[float, float]], asks: list[tuple[float, float]], levels: int = 3) -> tuple[np.ndarray, ...]:
    out = []
    for side in (bids, asks):
        px = np.full((1, levels), np.nan)
        sz = np.zeros((1, levels))
        for i, (p, q) in enumerate(side):
            px[0, i], sz[0, i] = p, q
        out += [px, sz]
    return tuple(out)


# -------------------------------------------------------------- cost curves


def test_cost_curves_buy_hand_computed_book_matches_level_arithmetic() -> None:
    bp, bs, ap, as_ = one_row([(9.99, 100)], [(10.01, 100), (10.02, 200)])
    c = cost_curves(bp, bs, ap, as_, np.array([0.0, 50.0, 150.0, 300.0]), side="buy")
    # mid 10.00; 150 shares = 100 @ +0.01 + 50 @ +0.02
    np.testing.assert_allclose(c.cost[0], [0.0, 0.5, 2.0, 5.0], atol=1e-12)
    assert not c.extrapolated.any()
    assert c.mid[0] == pytest.approx(10.0)


def test_cost_curves_sell_walks_bids_and_cost_is_positive() -> None:
    bp, bs, ap, as_ = one_row([(9.99, 100), (9.97, 100)], [(10.01, 100)])
    c = cost_curves(bp, bs, ap, as_, np.array([100.0, 200.0]), side="sell")
    np.testing.assert_allclose(c.cost[0], [1.0, 1.0 + 3.0], atol=1e-12)


def test_cost_curves_beyond_visible_depth_extrapolates_with_penalty_and_flags() -> None:
    bp, bs, ap, as_ = one_row([(9.99, 100)], [(10.01, 100), (10.02, 200)])
    sizes = np.array([100.0, 300.0, 400.0, 500.0])
    c = cost_curves(bp, bs, ap, as_, sizes, side="buy", tick=0.01, penalty_ticks=3.0)
    # 400 = 300 visible (cost 5.0) + 100 at worst 10.02 + 0.03 -> 100 * 0.05
    np.testing.assert_allclose(c.cost[0], [1.0, 5.0, 10.0, 15.0], atol=1e-12)
    np.testing.assert_array_equal(c.extrapolated[0], [False, False, True, True])
    assert c.extrapolated_fraction == pytest.approx(0.5)
    c2 = cost_curves(bp, bs, ap, as_, sizes, side="buy", penalty_per_share=0.5)
    assert c2.cost[0, 3] == pytest.approx(5.0 + 200 * (0.02 + 0.5))


def test_cost_curves_sell_extrapolation_goes_below_worst_bid() -> None:
    bp, bs, ap, as_ = one_row([(9.99, 100)], [(10.01, 100)])
    c = cost_curves(bp, bs, ap, as_, np.array([200.0]), side="sell", penalty_per_share=0.1)
    assert c.cost[0, 0] == pytest.approx(100 * 0.01 + 100 * 0.11)
    assert c.extrapolated[0, 0]


def test_cost_curves_rows_with_empty_side_or_no_mid_are_excluded_and_counted() -> None:
    b = random_book(5, seed=1)
    ask_sz, ask_px, bid_sz, bid_px = b.ask_sz.copy(), b.ask_px.copy(), b.bid_sz.copy(), b.bid_px.copy()
    ask_sz[1], ask_px[1] = 0.0, np.nan  # walked side empty
    bid_sz[3], bid_px[3] = 0.0, np.nan  # mid undefined
    c = cost_curves(bid_px, bid_sz, ask_px, ask_sz, np.array([10.0, 10_000.0]), side="buy")
    np.testing.assert_array_equal(c.valid, [True, False, True, False, True])
    assert c.n_excluded == 2
    assert np.isnan(c.cost[[1, 3]]).all() and np.isfinite(c.cost[[0, 2, 4]]).all()
    assert not c.extrapolated[[1, 3]].any()
    assert c.extrapolated_fraction == pytest.approx(c.extrapolated[c.valid].mean())


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_cost_curves_inside_the_book_equal_the_simulator_level_walk(side: str) -> None:
    b = random_book(400, seed=2)
    sizes = np.array([1.0, 37.0, 250.0, 999.0, 2500.0, 6000.0])
    c = curves_from_book(b, sizes, side=side)  # type: ignore[arg-type]
    px, sz = (b.ask_px, b.ask_sz) if side == "buy" else (b.bid_px, b.bid_sz)
    sgn = 1.0 if side == "buy" else -1.0
    for j, x in enumerate(sizes):
        filled, notional = walk_levels(px, sz, x, buy=side == "buy")
        inside = filled >= x - 1e-9
        np.testing.assert_array_equal(inside, ~c.extrapolated[:, j])
        expected = sgn * (notional - c.mid * x)
        np.testing.assert_allclose(c.cost[inside, j], expected[inside], rtol=1e-10, atol=1e-8)


def test_cost_curves_spanning_several_row_blocks_equal_the_level_walk() -> None:
    b = random_book(20_000, seed=9)  # more rows than one internal block
    sizes = np.array([500.0, 3000.0])
    c = curves_from_book(b, sizes, side="buy")
    for j, x in enumerate(sizes):
        filled, notional = walk_levels(b.ask_px, b.ask_sz, x)
        inside = ~c.extrapolated[:, j]
        np.testing.assert_array_equal(inside, filled >= x - 1e-9)
        np.testing.assert_allclose(c.cost[inside, j], (notional - c.mid * x)[inside], rtol=1e-10, atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["buy", "sell"]))
def test_cost_curves_are_zero_at_zero_nondecreasing_and_convex(seed: int, side: str) -> None:
    b = random_book(20, seed=seed)
    sizes = np.linspace(0.0, 8000.0, 41)
    c = curves_from_book(b, sizes, side=side)  # type: ignore[arg-type]
    np.testing.assert_allclose(c.cost[:, 0], 0.0, atol=1e-9)
    d = np.diff(c.cost, axis=1)
    assert (d >= -1e-9).all()
    assert (np.diff(d, axis=1) >= -1e-7).all()


def test_cost_curves_rejects_negative_sizes_and_bad_side() -> None:
    bp, bs, ap, as_ = one_row([(9.99, 100)], [(10.01, 100)])
    with pytest.raises(ValueError, match="sizes"):
        cost_curves(bp, bs, ap, as_, np.array([-1.0]), side="buy")
    with pytest.raises(ValueError, match="side"):
        cost_curves(bp, bs, ap, as_, np.array([1.0]), side="hold")  # type: ignore[arg-type]


def test_default_sizes_span_a_multiple_of_the_twap_slice() -> None:
    s = default_sizes(6000, 30, multiple=4.0, points=20)
    assert s.shape == (20,) and s[0] == pytest.approx(40.0) and s[-1] == pytest.approx(800.0)
    with pytest.raises(ValueError):
        default_sizes(0, 30)


def test_depth_sizes_top_is_median_visible_depth_and_empty_book_raises() -> None:
    b = random_book(50, seed=3)
    s = depth_sizes(b, side="buy", points=10)
    assert s[-1] == pytest.approx(np.median(b.ask_sz.sum(axis=1)))
    empty = b.take(np.arange(2))
    object.__setattr__(empty, "ask_sz", np.zeros_like(empty.ask_sz))
    with pytest.raises(DataError):
        depth_sizes(empty, side="buy")


# ---------------------------------------------------------------------- fits


def test_fit_quadratic_recovers_exact_coefficients_with_unit_r2() -> None:
    x = np.linspace(10, 1000, 25)
    f = fit_quadratic(x, 0.02 * x + 3e-5 * x**2)
    assert f.beta == pytest.approx(0.02, rel=1e-8) and f.gamma == pytest.approx(3e-5, rel=1e-8)
    assert f.r2 == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 100_000))
def test_fit_quadratic_matches_bounded_least_squares_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(1, 500, 15))
    c = rng.normal(0.01, 0.05) * x + rng.normal(0, 4e-5) * x**2 + rng.normal(0, 0.5, 15)
    w = rng.uniform(0.1, 2.0, 15)
    f = fit_quadratic(x, c, w)
    sw = np.sqrt(w)
    ref = lsq_linear(np.column_stack([x, x**2]) * sw[:, None], c * sw,
                     bounds=([0.0, GAMMA_FLOOR], [np.inf, np.inf]), tol=1e-12, method="bvls")
    sse = lambda b, g: float((w * (c - b * x - g * x**2) ** 2).sum())  # noqa: E731
    assert f.beta >= 0 and f.gamma >= GAMMA_FLOOR
    assert sse(f.beta, f.gamma) <= sse(*ref.x) * (1 + 1e-7) + 1e-12


def test_fit_quadratic_concave_data_hits_the_gamma_floor_and_negative_slope_hits_beta_zero() -> None:
    x = np.linspace(1, 100, 20)
    concave = fit_quadratic(x, 0.5 * x - 1e-3 * x**2)
    assert concave.gamma == GAMMA_FLOOR and concave.beta > 0
    falling = fit_quadratic(x, -0.1 * x + 1e-3 * x**2)
    assert falling.beta == 0.0 and falling.gamma > 0


def test_fit_quadratic_stacked_curves_with_row_weights_equal_fit_of_weighted_mean_curve() -> None:
    rng = np.random.default_rng(4)
    x = np.linspace(10, 500, 12)
    curves = 0.02 * x + 1e-5 * x**2 + rng.normal(0, 0.2, (30, 12))
    w = rng.uniform(0, 1, 30)
    a = fit_quadratic(x, curves, w)
    b = fit_quadratic(x, (w[:, None] * curves).sum(0) / w.sum())
    assert a.beta == pytest.approx(b.beta, rel=1e-9) and a.gamma == pytest.approx(b.gamma, rel=1e-9)


def test_fit_power_law_recovers_alpha_and_delta_and_clamps_concave_to_linear() -> None:
    x = np.linspace(10, 1000, 30)
    f = fit_power_law(x, 0.003 * x**1.4)
    assert f.alpha == pytest.approx(0.003, rel=1e-8) and f.delta == pytest.approx(0.4, rel=1e-8)
    assert f.r2 == pytest.approx(1.0)
    g = fit_power_law(x, 2.0 * np.sqrt(x))
    assert g.delta == 0.0 and g.r2 < 1.0
    assert np.isnan(fit_power_law(x, np.zeros_like(x)).alpha)


# ----------------------------------------------------------------- online


def _batch_reference(b: BookBatch, sizes: np.ndarray, half_life_s: float) -> tuple[float, float]:
    c = curves_from_book(b, sizes, side="buy")
    w = ew_weights(b.ts_event[c.valid], int(b.ts_event[c.valid].max()), half_life_s)
    f = fit_quadratic(sizes, c.cost[c.valid], w)
    return f.beta, f.gamma


def test_online_estimator_equals_batch_weighted_fit_and_chunking_does_not_matter() -> None:
    b = random_book(3000, seed=5, dt_s=0.5)
    sizes = default_sizes(20_000, 40)
    once = OnlineImpactEstimator("buy", sizes, half_life_s=120.0)
    once.update(b)
    chunked = OnlineImpactEstimator("buy", sizes, half_life_s=120.0)
    for a in range(0, len(b), 377):
        chunked.update(b[a:a + 377])
    beta, gamma = _batch_reference(b, sizes, 120.0)
    for est in (once, chunked):
        p = est.current()
        assert p.beta == pytest.approx(beta, rel=1e-9)
        assert p.gamma == pytest.approx(gamma, rel=1e-9)
    np.testing.assert_allclose(chunked.average_curve(), once.average_curve(), rtol=1e-10)
    assert chunked.snapshots == once.snapshots == len(b)


def test_online_estimator_half_life_halves_the_weight_of_an_older_snapshot() -> None:
    bp, bs, ap, as_ = one_row([(9.99, 100)], [(10.01, 1000)])
    bp2, bs2, ap2, as2 = one_row([(9.97, 100)], [(10.03, 1000)])
    b = BookBatch(ts_event=np.array([T0, T0 + 60 * NS]), symbol=np.full(2, "X"), action=np.full(2, "A"),
                  side=np.full(2, "A"), price=np.array([10.0, 10.0]), size=np.array([1.0, 1.0]),
                  bid_px=np.vstack([bp, bp2]), bid_sz=np.vstack([bs, bs2]),
                  ask_px=np.vstack([ap, ap2]), ask_sz=np.vstack([as_, as2]))
    est = OnlineImpactEstimator("buy", np.array([100.0, 200.0]), half_life_s=60.0)
    est.update(b)
    # curves: 0.01 x and 0.03 x, weights 0.5 and 1 -> beta = (0.005 + 0.03) / 1.5
    assert est.current().beta == pytest.approx((0.5 * 0.01 + 0.03) / 1.5, abs=1e-9)  # gamma at floor


def test_online_estimator_before_data_raises_data_error_and_is_not_ready() -> None:
    est = OnlineImpactEstimator("sell", default_sizes(1000, 10))
    assert not est.ready
    with pytest.raises(DataError, match="usable snapshot"):
        est.current()
    with pytest.raises(DataError):
        est.forecast(3, ts_ns=T0, period_s=60.0)


def test_online_estimator_skips_rows_with_empty_side_and_counts_them() -> None:
    b = random_book(10, seed=6)
    ask_sz, ask_px = b.ask_sz.copy(), b.ask_px.copy()
    ask_sz[:4], ask_px[:4] = 0.0, np.nan
    object.__setattr__(b, "ask_sz", ask_sz)
    object.__setattr__(b, "ask_px", ask_px)
    est = OnlineImpactEstimator("buy", default_sizes(1000, 10))
    est.update(b[:4])
    assert not est.ready and est.excluded == 4
    est.update(b[4:])
    assert est.ready and est.snapshots == 6


def test_online_estimator_state_roundtrips_through_json_and_keeps_updating_identically() -> None:
    b = random_book(2000, seed=7)
    sizes = default_sizes(5000, 20)
    a = OnlineImpactEstimator("sell", sizes, half_life_s=90.0, penalty_ticks=5.0)
    a.update(b[:1200])
    restored = OnlineImpactEstimator.from_state(json.loads(json.dumps(a.state(), allow_nan=False)))
    a.update(b[1200:])
    restored.update(b[1200:])
    assert restored.current() == a.current()
    assert restored.state() == a.state()
    with pytest.raises(DataError, match="version"):
        OnlineImpactEstimator.from_state({**a.state(), "version": 99})


def test_online_forecast_is_flat_without_profile_and_scaled_by_profile_ratio() -> None:
    b = random_book(500, seed=8)
    est = OnlineImpactEstimator("buy", default_sizes(5000, 20))
    est.update(b)
    p = est.current()
    beta, gamma = est.forecast(4, ts_ns=int(b.ts_event[-1]), period_s=60.0)
    np.testing.assert_allclose(beta, p.beta)
    np.testing.assert_allclose(gamma, p.gamma)
    day = 86_400 * NS
    prof = IntradayProfile(bucket_s=3600.0, centres_s=np.array([0.0, 86_400.0]),
                           factors={"beta": np.array([1.0, 2.0]), "gamma": np.array([1.0, 1.0])})
    t_last = int(b.ts_event[-1])
    beta2, gamma2 = est.forecast(3, ts_ns=t_last, period_s=3600.0, profile=prof)
    f = lambda t: 1.0 + (t % day) / day  # noqa: E731
    expected = p.beta * np.array([f(t_last + k * 3600 * NS) / f(t_last) for k in range(3)])
    np.testing.assert_allclose(beta2, expected, rtol=1e-12)
    np.testing.assert_allclose(gamma2, p.gamma)
