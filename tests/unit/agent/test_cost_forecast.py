"""BookSampler + ParentForecaster: slot 0 from the book now, reversion to the level after, and what the QP does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.core.forecast.cost_forecast import ParentForecaster, SlotForecast, fit_rows, floor_gamma
from agent.core.forecast.profile import IntradayProfile
from agent.core.forecast.reversion import ReversionEstimator, ReversionSettings
from agent.core.forecast.sampler import BookSampler
from agent.core.impact.curves import cost_curves, curves_from_book, default_sizes
from agent.core.impact.fit import fit_quadratic
from agent.core.model import ImpactParams, ParentOrder
from agent.core.policy import DecisionInput, EngineSettings, MPCPolicy
from feeds.book import BookBatch

NS = 1_000_000_000
T0 = 1_743_687_000 * NS  # 2025-04-03 13:30:00 UTC
TICK = 0.01


def book(half_spread_ticks: np.ndarray, *, start_s: float = 0.0, depth: float = 500.0,
         trade_every: int = 5, trade_size: float = 100.0, mid: float = 50.0) -> BookBatch:
    """One row per second; row i has the given half-spread (ticks); levels one tick apart.

    Level j of each side holds ``depth * (1 + j)`` shares; every ``trade_every``-th row is a trade.
    """
    h = np.asarray(half_spread_ticks, dtype=np.float64)
    n = h.size
    ts = T0 + round(start_s * NS) + np.arange(n, dtype=np.int64) * NS
    steps = (h[:, None] + np.arange(10)[None, :]) * TICK
    bid_px, ask_px = np.round(mid - steps, 6), np.round(mid + steps, 6)
    sz = np.broadcast_to(depth * (1.0 + np.arange(10)), (n, 10)).copy()
    action = np.where(np.arange(n) % trade_every == 0, "T", "A") if trade_every else np.full(n, "A")
    return BookBatch(ts_event=ts, symbol=np.full(n, "TEST"), action=action, side=np.full(n, "A"),
                     price=ask_px[:, 0].copy(), size=np.full(n, trade_size), bid_px=bid_px,
                     bid_sz=sz.copy(), ask_px=ask_px, ask_sz=sz.copy())


def iid_spreads(seconds: int, seed: int, hold_s: int = 10) -> np.ndarray:
    """Half-spread 2, 3 or 4 ticks, redrawn every ``hold_s`` seconds, independently: no persistence."""
    rng = np.random.default_rng(seed)
    return np.repeat(rng.integers(2, 5, size=-(-seconds // hold_s)), hold_s)[:seconds].astype(float)


PARENT = ParentOrder(parent_id="p", symbol="TEST", side="buy", quantity=6_000.0,
                     start_ns=T0 + 3_600 * NS, end_ns=T0 + 3_600 * NS + 30 * 60 * NS, period_s=60.0)


class Forecaster:
    """A symbol's sampler and one parent's forecaster, as the engine holds them."""

    def __init__(self, profile: IntradayProfile | None = None,
                 settings: ReversionSettings | None = None) -> None:
        self.sampler = BookSampler(settings, profile=profile)
        self.parent = ParentForecaster("buy", default_sizes(PARENT.quantity, PARENT.n_periods), settings,
                                       profile=profile)

    def update(self, b: BookBatch) -> None:
        self.sampler.update(b)

    def now(self, b: BookBatch, i: int) -> ImpactParams:
        return self.parent.now(self.sampler, b, i)

    def forecast(self, now: ImpactParams, n: int, *, ts_ns: int, period_s: float) -> SlotForecast:
        return self.parent.forecast(now, self.sampler, n, ts_ns=ts_ns, period_s=period_s)

    def estimator(self, kind: str) -> ReversionEstimator:
        self.parent.catch_up(self.sampler)
        return self.sampler.volume if kind == "volume" else self.parent.est[kind]


def plan(fc: Forecaster, now_book: BookBatch, *, remaining: float = PARENT.quantity, periods: int = 30,
         participation: float = 0.2, settings: EngineSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What the engine does at one decision: forecast, convexity floor, caps, trust region, MPC QP."""
    s = settings or EngineSettings()
    ts = int(now_book.ts_event[-1])
    now = fc.now(now_book, len(now_book) - 1)
    f = fc.forecast(now, periods, ts_ns=ts, period_s=PARENT.period_s)
    assert f.volume is not None
    gamma = floor_gamma(f.beta, f.gamma, remaining=remaining, periods_left=periods, lot=1.0,
                        min_convexity=s.min_convexity)
    cap = participation * f.volume
    d = DecisionInput(PARENT, 0, periods, remaining, 0.0, f.beta, gamma, cap, f.volume, 0.0, 50.0, ts, 0.0,
                      s.max_child_multiple * remaining / periods)
    return MPCPolicy(PARENT, s).decide(d).schedule, cap


def warm(seconds: int, spreads: np.ndarray | None = None) -> Forecaster:
    fc = Forecaster()
    fc.update(book(spreads if spreads is not None else np.full(seconds, 3.0)))
    return fc


def test_fit_rows_equals_fit_quadratic_row_by_row() -> None:
    rng = np.random.default_rng(0)
    spreads = rng.integers(1, 6, 200).astype(float)
    b = book(spreads, depth=150.0)
    b.ask_sz[:] *= rng.uniform(0.2, 3.0, b.ask_sz.shape)  # uneven depth: interior and edge optima
    for q in (600.0, 6_000.0, 60_000.0):
        sizes = default_sizes(q, 30)
        cost = curves_from_book(b, sizes, side="buy").cost
        beta, gamma = fit_rows(sizes, cost)
        for i in range(0, 200, 7):
            f = fit_quadratic(sizes, cost[i])
            assert (beta[i], gamma[i]) == pytest.approx((f.beta, f.gamma), rel=1e-9, abs=1e-15)


def test_slot_zero_is_the_decision_snapshots_own_fit() -> None:
    fc = warm(1_800, iid_spreads(1_800, 1))
    now_book = book(np.array([1.0]), start_s=1_800.0, depth=80.0)
    now = fc.now(now_book, 0)
    sizes = fc.parent.sizes
    f = fit_quadratic(sizes, cost_curves(now_book.bid_px, now_book.bid_sz, now_book.ask_px,
                                         now_book.ask_sz, sizes, side="buy").cost[0])
    assert (now.beta, now.gamma) == pytest.approx((f.beta, f.gamma))
    fcast = fc.forecast(now, 30, ts_ns=int(now_book.ts_event[0]), period_s=60.0)
    assert fcast.beta[0] == now.beta and fcast.gamma[0] == now.gamma


def test_forecast_reverts_geometrically_to_the_level() -> None:
    fc = warm(3_600, iid_spreads(3_600, 2))
    est = fc.estimator("beta")
    rho = float(est.persistence(60.0))
    assert 0.0 <= rho < 0.5  # redrawn every 10 s: little persistence at one minute
    now_book = book(np.array([1.0]), start_s=3_600.0)
    now = fc.now(now_book, 0)
    f = fc.forecast(now, 10, ts_ns=int(now_book.ts_event[0]), period_s=60.0)
    level = est.level
    d = now.beta / level - 1.0
    k = np.arange(10)
    want = level * (1.0 + d * rho ** k)
    assert f.beta[1:] == pytest.approx(want[1:], rel=1e-12)
    assert f.rho["beta"] == pytest.approx(rho) and f.deviation["beta"] == pytest.approx(d)
    # a period of 120 s uses rho(120 s) = rho(60 s)^2 per slot
    f2 = fc.forecast(now, 5, ts_ns=int(now_book.ts_event[0]), period_s=120.0)
    assert f2.beta[1:] == pytest.approx(level * (1.0 + d * rho ** (2 * np.arange(1, 5))), rel=1e-12)


def test_profile_shapes_the_level_and_the_deviation_is_measured_at_the_current_time_of_day() -> None:
    tod = (T0 % (86_400 * NS)) // NS  # 13:30 UTC
    centres = np.array([tod - 1_800.0, tod + 3_600.0, tod + 9_000.0])
    prof = IntradayProfile(bucket_s=1_800.0, centres_s=centres,
                           factors={"beta": np.array([1.0, 1.0, 2.0]), "gamma": np.ones(3),
                                    "volume": np.ones(3), "sigma": np.ones(3)})
    fc = Forecaster(profile=prof)
    fc.update(book(np.full(3_600, 3.0)))
    now_book = book(np.array([3.0]), start_s=3_600.0)
    f = fc.forecast(fc.now(now_book, 0), 120, ts_ns=int(now_book.ts_event[0]), period_s=60.0)
    assert f.deviation["beta"] == pytest.approx(0.0, abs=1e-9)  # the book is at its usual level now
    ratio = prof.factor("beta", now_book.ts_event[0] + np.arange(120) * 60 * NS) / prof.factor(
        "beta", now_book.ts_event[0])
    assert f.beta == pytest.approx(f.beta[0] * ratio, rel=1e-9)  # later slots follow the profile
    assert f.beta[-1] > 1.5 * f.beta[0]


def test_a_flat_book_gives_an_even_split() -> None:
    fc = warm(3_600)
    now_book = book(np.array([3.0]), start_s=3_600.0)
    schedule, _ = plan(fc, now_book)
    assert schedule.sum() == pytest.approx(PARENT.quantity, rel=1e-6)
    assert schedule == pytest.approx(np.full(30, PARENT.quantity / 30), rel=1e-3)


@pytest.mark.parametrize("participation", [1.0, 0.4])
def test_a_cheap_book_now_trades_more_now_bounded_by_the_trust_region_and_the_cap(participation: float) -> None:
    fc = warm(3_600, iid_spreads(3_600, 3))
    even = PARENT.quantity / 30
    schedule, cap = plan(fc, book(np.array([1.0]), start_s=3_600.0), participation=participation)
    trust = EngineSettings().max_child_multiple * even
    bound = min(trust, cap[0])
    assert schedule[0] > 1.5 * even
    assert schedule[0] == pytest.approx(bound, rel=1e-3)  # as much as allowed: one of the two binds
    assert (trust < cap[0]) == (participation == 1.0)  # both cases are exercised
    assert schedule.sum() == pytest.approx(PARENT.quantity, rel=1e-6)
    # the deviation decays: later slots are dearer, so they get less, down to below the even slice
    assert (np.diff(schedule[1:]) <= 1e-3 * even).all() and schedule[-1] < even


def test_an_expensive_book_now_trades_less_now() -> None:
    fc = warm(3_600, iid_spreads(3_600, 4))
    schedule, _ = plan(fc, book(np.array([6.0]), start_s=3_600.0))
    assert schedule[0] < 0.25 * PARENT.quantity / 30
    assert schedule.sum() == pytest.approx(PARENT.quantity, rel=1e-6)


def test_without_evidence_of_reversion_a_cheap_book_is_expected_to_persist() -> None:
    """Constant history: no deviation pairs, the prior (no reversion) holds, later slots stay at 'now'."""
    fc = warm(3_600)
    now_book = book(np.array([1.0]), start_s=3_600.0)
    f = fc.forecast(fc.now(now_book, 0), 30, ts_ns=int(now_book.ts_event[0]), period_s=60.0)
    assert f.rho["beta"] == pytest.approx(1.0)
    assert f.beta == pytest.approx(np.full(30, f.beta[0]), rel=1e-6)


def test_volume_forecast_reverts_from_the_last_window_to_the_level() -> None:
    busy = book(np.full(60, 3.0), start_s=3_600.0, trade_every=1)  # 100 shares/s in the last minute
    noisy = np.random.default_rng(5)
    fc = Forecaster()
    sizes = noisy.choice([2, 10, 50], size=360)  # volume redrawn every 10 s: reverts fast
    for j, every in enumerate(sizes):
        fc.update(book(np.full(10, 3.0), start_s=10.0 * j, trade_every=int(every)))
    fc.update(busy)
    now_book = book(np.array([3.0]), start_s=3_661.0)
    f = fc.forecast(fc.now(now_book, 0), 30, ts_ns=int(now_book.ts_event[0]), period_s=60.0)
    assert f.volume is not None
    level = 60.0 * fc.estimator("volume").level
    assert f.volume[0] > level and f.volume[-1] == pytest.approx(level, rel=1e-3)
    assert (np.diff(f.volume) <= 1e-9).all()


def test_chunking_and_a_state_round_trip_change_nothing() -> None:
    b = book(iid_spreads(2_400, 6))
    one = Forecaster()
    one.update(b)
    chunked, restored = Forecaster(), Forecaster()
    cuts = np.sort(np.random.default_rng(7).choice(np.arange(1, 2_399), 60, replace=False))
    parts = np.split(np.arange(2_400), cuts)
    for j, p in enumerate(parts[:30]):
        chunked.update(b[p[0]:p[-1] + 1])
        if j % 7 == 0:  # a decision now and then: the parent catches up in between
            chunked.parent.catch_up(chunked.sampler)
    chunked.parent.catch_up(chunked.sampler)  # the record is written after a decision (rows are memory only)
    restored.parent = ParentForecaster.from_state(
        json.loads(json.dumps(chunked.parent.state(), allow_nan=False)))
    restored.sampler = BookSampler.from_state(json.loads(json.dumps(chunked.sampler.state(), allow_nan=False)))
    for p in parts[30:]:
        chunked.update(b[p[0]:p[-1] + 1])
        restored.update(b[p[0]:p[-1] + 1])
    for kind in ("beta", "gamma", "volume"):
        w = one.estimator(kind).state()
        for got in (chunked.estimator(kind).state(), restored.estimator(kind).state()):
            for key in ("level_sum", "level_weight", "sxy", "sxx", "pairs"):
                assert got[key] == pytest.approx(w[key], rel=1e-9), (kind, key)
            assert got["samples"] == w["samples"]
            assert [k for k, _ in got["recent"]] == [k for k, _ in w["recent"]]
            assert [v for _, v in got["recent"]] == pytest.approx([v for _, v in w["recent"]], rel=1e-9)


def test_a_parent_submitted_later_finds_the_recent_history() -> None:
    fc = warm(3_600, iid_spreads(3_600, 8))
    late = ParentForecaster("buy", fc.parent.sizes)
    late.catch_up(fc.sampler)
    assert late.est["beta"].samples == fc.estimator("beta").samples == 360  # grid times 0..3590 s
    short = BookSampler(history_s=600.0)
    short.update(book(iid_spreads(3_600, 8)))
    assert short.rows_after(None)[0].size == 60  # only the last ten minutes are kept


def test_samples_skip_an_overnight_gap() -> None:
    fc = Forecaster()
    fc.update(book(np.full(600, 3.0)))
    fc.parent.catch_up(fc.sampler)  # a decision before the night (the sampler keeps two hours)
    fc.update(book(np.full(600, 3.0), start_s=20 * 3_600.0))  # 20 h later
    # 60 grid points in each ten-minute stretch; the ~7,000 inside the gap are stale
    assert fc.estimator("beta").samples == 2 * 60
