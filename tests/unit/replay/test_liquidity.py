"""replay.synthetic.liquidity and .intraday: the deviation model (simulated and measured) and
the day-to-day variation of the generator's intraday shapes."""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import date

import numpy as np
import pytest

from feeds.book import BookBatch
from replay.synthetic.day import NS, day_streams, deviations, generate_day, session_bounds
from replay.synthetic.intraday import COMMON, draw_day_shape
from replay.synthetic.liquidity import (
    correlated_ar1,
    fit_ar1,
    fit_level,
    level_basis,
    measure_days,
    minute_means,
    per_second_params,
)
from replay.synthetic.params import DAY_VARIATION, LIQUIDITY, LiquidityParams

OPEN, _ = session_bounds("2025-04-03")


# ------------------------------------------------------------ the AR(1) deviations
@pytest.mark.parametrize("liq", [LIQUIDITY, LiquidityParams(spread_rho=0.9, spread_sd=0.5,
                                                            depth_rho=0.3, depth_sd=0.2, corr=-0.4)])
def test_deviation_process_recovers_its_configured_rho_sd_and_corr_per_minute(
    liq: LiquidityParams,
) -> None:
    minutes = 40 * 390  # 40 sessions
    dev = deviations(np.random.default_rng(3), minutes * 60, liq)
    per_minute = dev[:, : minutes * 60].reshape(2, minutes, 60).mean(axis=2)  # as measured
    spread, depth = fit_ar1([per_minute[0]]), fit_ar1([per_minute[1]])
    assert spread.rho == pytest.approx(liq.spread_rho, abs=0.03)
    assert depth.rho == pytest.approx(liq.depth_rho, abs=0.03)
    assert spread.sd == pytest.approx(liq.spread_sd, rel=0.1)
    assert depth.sd == pytest.approx(liq.depth_sd, rel=0.1)
    assert np.corrcoef(per_minute)[0, 1] == pytest.approx(liq.corr, abs=0.06)


def test_correlated_ar1_starts_from_the_stationary_law() -> None:
    rng = np.random.default_rng(5)
    x0 = np.array([correlated_ar1(rng, 2, (0.95, 0.5), (2.0, 0.5), 0.6)[:, 0] for _ in range(4000)])
    assert x0[:, 0].std() == pytest.approx(2.0, rel=0.05)
    assert x0[:, 1].std() == pytest.approx(0.5, rel=0.05)
    assert np.corrcoef(x0.T)[0, 1] == pytest.approx(0.6, abs=0.05)


def test_fit_ar1_pools_pairs_within_days_only() -> None:
    a = np.array([1.0, 0.5, np.nan, 0.2, 0.1])
    b = np.array([-2.0, -1.0, -0.4])
    fit = fit_ar1([a, b])
    x = np.array([1.0, 0.2, -2.0, -1.0])  # pairs (1, .5), (.2, .1), (-2, -1), (-1, -.4)
    y = np.array([0.5, 0.1, -1.0, -0.4])
    assert fit.rho == pytest.approx(float(x @ y / (x @ x)))
    assert fit.pairs == 4
    with pytest.raises(ValueError):
        fit_ar1([np.array([1.0, 2.0])])


def test_fit_level_recovers_the_intraday_level_and_keeps_missing_minutes() -> None:
    coef = np.array([1.5, 2.0, -0.5])
    tau = np.arange(390) + 0.5
    noise = 0.05 * np.random.default_rng(0).standard_normal(390)
    y = level_basis(tau) @ coef + noise
    y[100] = np.nan
    got, d = fit_level(y)
    np.testing.assert_allclose(got, coef, atol=0.05)
    assert np.isnan(d[100]) and np.nanstd(d) == pytest.approx(0.05, rel=0.2)


def _book(ts: np.ndarray, spread_ticks: np.ndarray, depth_per_level: np.ndarray) -> BookBatch:
    n = len(ts)
    bid = np.full((n, 10), np.nan)
    ask = np.full((n, 10), np.nan)
    bid[:, 0], ask[:, 0] = 50.0, 50.0 + spread_ticks * 0.01
    bid[:, 1:5] = 50.0 - 0.01 * np.arange(1, 5)
    ask[:, 1:5] = ask[:, :1] + 0.01 * np.arange(1, 5)
    size = np.where(np.isfinite(bid), depth_per_level[:, None], 0.0)
    return BookBatch(ts_event=ts.astype(np.int64), symbol=np.full(n, "X"), action=np.full(n, "A"),
                     side=np.full(n, "B"), price=np.full(n, 50.0), size=np.full(n, 100.0),
                     bid_px=bid, bid_sz=size, ask_px=ask, ask_sz=size.copy())


def test_minute_means_are_time_weighted_and_nan_before_the_first_row() -> None:
    ts = np.array([OPEN + 60 * NS, OPEN + 75 * NS, OPEN + 150 * NS])
    b = _book(ts, np.array([2.0, 4.0, 6.0]), np.array([100.0, 300.0, 100.0]))
    spread, depth = minute_means(b, OPEN, minutes=3)
    assert math.isnan(spread[0]) and math.isnan(depth[0])
    assert spread[1] == pytest.approx((15 * 2 + 45 * 4) / 60)  # 2 ticks for 15 s, then 4
    assert depth[1] == pytest.approx((15 * 1000 + 45 * 3000) / 60)  # 5 levels a side, both sides
    assert spread[2] == pytest.approx((30 * 4 + 30 * 6) / 60)


def test_measure_days_recovers_rho_from_books_with_a_known_spread_process() -> None:
    """A book whose spread is exp(level + AR(1)) each second: the estimator finds the AR(1)."""
    rng = np.random.default_rng(9)
    books, opens = [], []
    for day in range(3):
        open_ns = OPEN + day * 86_400 * NS
        (phi_s, sd_s), (phi_q, sd_q) = per_second_params(0.8, 0.3), per_second_params(0.6, 0.2)
        dev = correlated_ar1(rng, 390 * 60, (phi_s, phi_q), (sd_s, sd_q), 0.0)
        tau = np.arange(390 * 60) / 60.0
        level = level_basis(tau) @ np.array([np.log(5.0), 1.0, 0.3])
        books.append(_book(open_ns + np.arange(390 * 60) * NS, np.exp(level + dev[0]) * 100,
                           1000.0 * np.exp(dev[1])))
        opens.append(open_ns)
    spread, depth, corr = measure_days(books, opens, tick=0.0001)  # spread of ~500 fine ticks
    assert spread.ar1.rho == pytest.approx(0.8, abs=0.05)
    assert depth.ar1.rho == pytest.approx(0.6, abs=0.07)
    assert spread.level[1] == pytest.approx(1.0, abs=0.2)
    assert spread.ar1.sd == pytest.approx(0.3, rel=0.15)
    assert abs(corr) < 0.1


def test_per_second_params_give_minute_means_with_the_requested_moments() -> None:
    phi, sd = per_second_params(0.7, 0.4)
    x = correlated_ar1(np.random.default_rng(2), 80_000 * 60, (phi, 0.5), (sd, 1.0), 0.0)[0]
    means = x.reshape(80_000, 60).mean(axis=1)
    assert np.corrcoef(means[:-1], means[1:])[0, 1] == pytest.approx(0.7, abs=0.015)
    assert means.std() == pytest.approx(0.4, rel=0.03)
    assert phi**60 < 0.7  # averaging makes minute means more persistent than minute-apart points


def test_generator_targets_carry_the_deviations() -> None:
    """Spread anchor and depth target of every event are their level times exp(deviation)."""
    from replay.synthetic.day import event_draws
    from replay.synthetic.params import PARAMS

    p = PARAMS["SYNB"]
    shape = COMMON
    dev = deviations(np.random.default_rng(1), 3600)
    ts = OPEN + np.sort(np.random.default_rng(2).integers(0, 3600 * NS, 2000))
    draws = event_draws(np.random.default_rng(4), p, shape, dev, ts, OPEN)
    tau = (ts - OPEN) / NS / 60.0
    sec = (ts - OPEN) // NS
    np.testing.assert_allclose(draws.depth_target,
                               p.depth_target * shape.depth(tau) * np.exp(dev[1, sec]))
    level = p.spread0 * shape.volatility(tau) ** p.spread_eta * np.exp(dev[0, sec])
    assert ((draws.spread >= np.floor(level)) & (draws.spread <= np.maximum(1, np.floor(level) + 1))).all()


@pytest.mark.slow
def test_spread_deviations_make_the_realised_spread_more_persistent() -> None:
    """SYNB with and without the deviation process (same seed): only the process differs."""
    off = LiquidityParams(spread_sd=1e-9, depth_sd=1e-9)
    acf1 = {}
    for name, liq in (("on", LIQUIDITY), ("off", off)):
        days = ["2025-03-28", "2025-03-31"]
        books = [generate_day(7, ["SYNB"], d, liquidity=liq).to_batch() for d in days]
        spread, _, _ = measure_days(books, [session_bounds(d)[0] for d in days])
        acf1[name] = spread.ar1.acf[0]
    assert acf1["on"] > acf1["off"] + 0.05


# ------------------------------------------------------------- day-to-day variation
def test_day_shapes_vary_around_the_common_shape_with_mean_one_multipliers() -> None:
    rng = np.random.default_rng(0)
    draws = [draw_day_shape(rng) for _ in range(4000)]
    for f in fields(COMMON):
        values = np.array([getattr(d, f.name) for d in draws])
        assert values.mean() == pytest.approx(getattr(COMMON, f.name), rel=0.03), f.name
    events = np.log([d.events_scale for d in draws])
    assert events.std() == pytest.approx(DAY_VARIATION.events, rel=0.1)


def test_each_sample_day_has_its_own_shape_drawn_from_its_own_stream() -> None:
    days = ["2025-03-31", "2025-04-01"]
    made = [generate_day(1, ["SYNB"], d, close_hm="09:40") for d in days]
    shapes = [m.shapes["SYNB"] for m in made]
    assert shapes[0] != shapes[1]
    for d, s in zip(days, shapes, strict=True):
        assert s == draw_day_shape(day_streams(1, "SYNB", date.fromisoformat(d))[0])
    u = [s.activity(np.array([0.0]))[0] for s in shapes]
    assert u[0] != pytest.approx(u[1])
