"""Volume and volatility estimators and the intraday profile."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agent.core.errors import DataError
from agent.core.forecast.profile import DAY_NS, bucket_stats
from agent.core.forecast.volume import IntradayProfile, VolatilityEstimator, VolumeEstimator
from feeds.book import BookBatch
from tests.unit.agent.books import NS, T0, ladder_book

# --------------------------------------------------------------- volume


def test_volume_per_period_with_long_half_life_is_traded_over_covered_time() -> None:
    b = ladder_book(T0 + np.arange(600) * NS, trade_every=10, trade_size=100.0)
    est = VolumeEstimator(60.0, half_life_s=1e9)
    est.update(b)
    assert est.per_period() == pytest.approx(6000.0 / 599.0 * 60.0, rel=1e-6)
    assert est.total_traded == 6000.0


def test_volume_matches_direct_exponentially_weighted_formula() -> None:
    rng = np.random.default_rng(0)
    ts = T0 + np.cumsum(rng.exponential(2.0, 800) * NS).astype(np.int64)
    b = ladder_book(ts, trade_every=3, trade_size=250.0)
    h = 300.0
    est = VolumeEstimator(60.0, half_life_s=h)
    est.update(b)
    T = ts[-1]
    trades = b.action == "T"
    s = (b.size[trades] * 2.0 ** (-(T - ts[trades]) / NS / h)).sum()
    a, e = ts[:-1], ts[1:]
    exposure = (h / math.log(2) * (2.0 ** (-(T - e) / NS / h) - 2.0 ** (-(T - a) / NS / h))).sum()
    assert est.per_period() == pytest.approx(60.0 * s / exposure, rel=1e-10)


def test_volume_chunked_updates_equal_one_update() -> None:
    rng = np.random.default_rng(1)
    ts = T0 + np.cumsum(rng.exponential(1.0, 1000) * NS).astype(np.int64)
    b = ladder_book(ts, trade_every=4)
    once, chunked = VolumeEstimator(60.0, half_life_s=200.0), VolumeEstimator(60.0, half_life_s=200.0)
    once.update(b)
    for a in range(0, len(b), 97):
        chunked.update(b[a:a + 97])
    assert chunked.per_period() == pytest.approx(once.per_period(), rel=1e-10)


def test_volume_overnight_gap_is_not_counted_as_session_time() -> None:
    day1 = ladder_book(T0 + np.arange(100) * NS, trade_every=10)
    day2 = ladder_book(T0 + DAY_NS + np.arange(100) * NS, trade_every=10)
    est = VolumeEstimator(60.0, half_life_s=1e12, max_gap_s=900.0)
    est.update(BookBatch.concat([day1, day2]))
    assert est.per_period() == pytest.approx(2000.0 / 198.0 * 60.0, rel=1e-6)


def test_volume_cold_start_returns_prior_and_prior_blends_with_data() -> None:
    assert VolumeEstimator(60.0).per_period() == 0.0
    est = VolumeEstimator(60.0, half_life_s=1e12, prior_per_period=600.0, prior_s=100.0)
    assert est.per_period() == pytest.approx(600.0)
    est.update(ladder_book(T0 + np.arange(101) * NS))  # 100 s, no trades
    assert est.per_period() == pytest.approx(300.0, rel=1e-6)


def test_volume_forecast_flat_and_with_profile_ratio() -> None:
    b = ladder_book(T0 + np.arange(600) * NS, trade_every=10)
    est = VolumeEstimator(60.0, half_life_s=1e9)
    est.update(b)
    np.testing.assert_allclose(est.forecast(3, ts_ns=T0), est.per_period())
    prof = IntradayProfile(centres_s=np.array([0.0, 86_400.0]), factors={"volume": np.array([1.0, 3.0])})
    t = int(b.ts_event[-1])
    got = est.forecast(2, ts_ns=t, profile=prof)
    f = lambda x: 1.0 + 2.0 * (x % DAY_NS) / DAY_NS  # noqa: E731
    np.testing.assert_allclose(got, est.per_period() * np.array([1.0, f(t + 60 * NS) / f(t)]), rtol=1e-12)


def test_volume_state_roundtrips_through_json() -> None:
    b = ladder_book(T0 + np.arange(300) * NS, trade_every=7)
    a = VolumeEstimator(30.0, half_life_s=120.0)
    a.update(b[:150])
    r = VolumeEstimator.from_state(json.loads(json.dumps(a.state(), allow_nan=False)))
    a.update(b[150:])
    r.update(b[150:])
    assert r.state() == a.state()
    with pytest.raises(DataError):
        VolumeEstimator.from_state({**a.state(), "kind": "volatility"})


# ----------------------------------------------------------- volatility


def _zigzag(n: int, step: float = 0.01, dt_s: float = 10.0, offset_s: float = 0.5) -> BookBatch:
    """Mid alternating +step/-step every dt_s, events just after each grid point."""
    mids = 50.0 + step * (np.arange(n) % 2)
    ts = T0 + ((np.arange(n) * dt_s + offset_s) * NS).astype(np.int64)
    return ladder_book(ts, mid=mids)


def test_volatility_zigzag_mid_gives_step_times_sqrt_samples_per_period() -> None:
    est = VolatilityEstimator(60.0, half_life_s=1e9, sample_s=10.0)
    est.update(_zigzag(200))
    assert est.sigma() == pytest.approx(0.01 * math.sqrt(6.0), rel=1e-6)
    assert est.returns == 198


def test_volatility_quote_flicker_between_grid_points_is_ignored() -> None:
    base = _zigzag(100)
    flick_ts = base.ts_event + 3 * NS  # a move that reverts before the next grid point
    flick = ladder_book(flick_ts, mid=base.mid() + 0.5)
    back = ladder_book(base.ts_event + 4 * NS, mid=base.mid())
    order = np.argsort(np.concatenate([base.ts_event, flick_ts, back.ts_event]), kind="stable")
    b = BookBatch.concat([base, flick, back]).take(order)
    plain, noisy = VolatilityEstimator(60.0, half_life_s=1e9), VolatilityEstimator(60.0, half_life_s=1e9)
    plain.update(base)
    noisy.update(b)
    assert noisy.sigma() == pytest.approx(plain.sigma(), rel=1e-9)


def test_volatility_chunked_updates_equal_one_update() -> None:
    rng = np.random.default_rng(2)
    ts = T0 + np.cumsum(rng.exponential(1.5, 2000) * NS).astype(np.int64)
    b = ladder_book(ts, mid=50.0 + np.cumsum(rng.normal(0, 0.01, 2000)))
    once, chunked = VolatilityEstimator(60.0, half_life_s=300.0), VolatilityEstimator(60.0, half_life_s=300.0)
    once.update(b)
    for a in range(0, len(b), 131):
        chunked.update(b[a:a + 131])
    assert chunked.sigma() == pytest.approx(once.sigma(), rel=1e-10)
    assert chunked.returns == once.returns


def test_volatility_overnight_jump_is_excluded() -> None:
    d1 = _zigzag(100)
    d2 = ladder_book(d1.ts_event + DAY_NS, mid=d1.mid() + 5.0)
    est = VolatilityEstimator(60.0, half_life_s=1e12, max_gap_s=900.0)
    est.update(BookBatch.concat([d1, d2]))
    assert est.sigma() == pytest.approx(0.01 * math.sqrt(6.0), rel=1e-6)


def test_volatility_cold_start_is_zero_and_state_roundtrips() -> None:
    est = VolatilityEstimator(60.0)
    assert est.sigma() == 0.0
    b = _zigzag(80)
    est.update(b[:33])
    r = VolatilityEstimator.from_state(json.loads(json.dumps(est.state(), allow_nan=False)))
    est.update(b[33:])
    r.update(b[33:])
    assert r.state() == est.state()


# -------------------------------------------------------------- profile


def _day(day: int, *, morning_spread: int, afternoon_trades: int) -> BookBatch:
    """Two hours, one event a second: wider spread in hour 1, more trades in hour 2."""
    t0 = T0 + day * DAY_NS
    h1 = ladder_book(t0 + np.arange(3600) * NS, half_spread_ticks=morning_spread, trade_every=20)
    h2 = ladder_book(t0 + (3600 + np.arange(3600)) * NS, half_spread_ticks=1, trade_every=afternoon_trades)
    return BookBatch.concat([h1, h2])


def test_profile_flat_ratio_is_one_and_learn_without_days_is_flat() -> None:
    flat = IntradayProfile.flat()
    np.testing.assert_array_equal(flat.ratio("volume", T0, T0 + np.arange(3) * 3600 * NS), 1.0)
    assert IntradayProfile.learn([]).is_flat
    with pytest.raises(ValueError):
        flat.ratio("spread", T0, np.array([T0]))


def test_profile_learn_captures_wider_morning_spread_and_busier_afternoon() -> None:
    days = [_day(0, morning_spread=3, afternoon_trades=5), _day(1, morning_spread=3, afternoon_trades=5)]
    prof = IntradayProfile.learn(days, bucket_s=1800.0, sizes=np.linspace(50, 500, 10))
    assert prof.days == 2 and prof.centres_s.size == 4  # T0 is 13:30 UTC: buckets 13:30..15:30
    morning, afternoon = T0 + 900 * NS, T0 + 4500 * NS  # bucket centres
    # beta ~ half-spread: 3 ticks vs 1 tick
    assert prof.ratio("beta", afternoon, np.array([morning]))[0] == pytest.approx(3.0, rel=0.05)
    # one trade every 20 s vs every 5 s
    assert prof.ratio("volume", morning, np.array([afternoon]))[0] == pytest.approx(4.0, rel=0.01)


def test_profile_roundtrips_through_json() -> None:
    prof = IntradayProfile.learn([_day(0, morning_spread=2, afternoon_trades=4)], bucket_s=1800.0,
                                 sizes=np.linspace(50, 500, 10))
    back = IntradayProfile.from_dict(json.loads(json.dumps(prof.to_dict(), allow_nan=False)))
    t = T0 + np.arange(0, 7200, 600) * NS
    for kind in ("beta", "gamma", "volume", "sigma"):
        np.testing.assert_array_equal(back.ratio(kind, T0, t), prof.ratio(kind, T0, t))


def test_bucket_stats_counts_every_trade_and_snapshot_once() -> None:
    b = _day(0, morning_spread=2, afternoon_trades=4)
    st = bucket_stats(b, lambda t: (t - T0) // (600 * NS), 12, np.array([100.0, 200.0]), side="buy")
    assert st.snapshots.sum() == len(b)
    assert st.volume.sum() == pytest.approx(b.size[b.action == "T"].sum())
    assert st.covered_s.sum() == pytest.approx((b.ts_event[-1] - b.ts_event[0]) / NS)
