"""Benchmark strategies: each matches its definition; catch-up; factory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.model import NS_PER_S, ParentOrder
from agent.core.policy import DecisionInput, EngineSettings
from replay.strategies import (
    AlmgrenChrissPolicy,
    OpenLoopPolicy,
    POVPolicy,
    TWAPPolicy,
    VolumeCurve,
    VWAPPolicy,
    ac_inventory,
    policy_factory,
    whole_lots,
)

T0 = 1_743_687_000 * NS_PER_S  # 2025-04-03 13:30 UTC
MIN = 60 * NS_PER_S


def _parent(q: float = 1000.0, n: int = 10, **kw: object) -> ParentOrder:
    return ParentOrder("P", "TEST", "buy", q, T0, T0 + n * MIN, 60.0, **kw)  # type: ignore[arg-type]


def _d(parent: ParentOrder, k: int, filled: float, *, vol: float = 1000.0, traded: float = 0.0,
       gamma: float = 1e-4, sigma: float = 0.0) -> DecisionInput:
    left = parent.n_periods - k
    return DecisionInput(
        parent, k, left, parent.quantity - filled, filled, np.full(left, 0.01), np.full(left, gamma),
        np.full(left, np.inf), np.full(left, vol), sigma, 50.0, parent.period_start_ns(k), traded,
    )


def test_twap_child_is_the_linear_cumulative_target_minus_filled() -> None:
    p = _parent(1000.0, 10)
    pol = TWAPPolicy(p, EngineSettings())
    assert pol.decide(_d(p, 0, 0.0)).schedule[0] == pytest.approx(100.0)
    assert pol.decide(_d(p, 1, 100.0)).schedule[0] == pytest.approx(100.0)
    # a short fill is caught up: target after period 2 is 300, only 150 filled
    plan = pol.decide(_d(p, 2, 150.0))
    assert plan.schedule[0] == pytest.approx(150.0)
    assert plan.schedule[1:] == pytest.approx(np.full(7, 100.0))
    assert len(plan.schedule) == 8
    assert pol.decide(_d(p, 9, 850.0)).schedule[0] == pytest.approx(150.0)


def test_twap_never_sells_back_when_ahead_of_target() -> None:
    p = _parent(1000.0, 10)
    pol = TWAPPolicy(p, EngineSettings())
    assert pol.decide(_d(p, 1, 400.0)).schedule[0] == 0.0


def test_volume_curve_window_volumes_match_bucketed_trades() -> None:
    ts = T0 + np.array([10, 20, 70, 130, 135, 200]) * NS_PER_S
    sz = np.array([100.0, 50.0, 30.0, 10.0, 10.0, 5.0])
    curve = VolumeCurve.from_trades(ts, sz, bucket_s=60.0)
    w = curve.window_volumes(T0, MIN, 4)
    assert w == pytest.approx([150.0, 30.0, 20.0, 5.0])
    # periods not aligned with buckets: linear inside a bucket
    half = curve.window_volumes(T0 + 30 * NS_PER_S, MIN, 1)
    assert half == pytest.approx([0.5 * 150.0 + 0.5 * 30.0])
    two_days = VolumeCurve.from_trades(np.concatenate([ts, ts + 86_400 * NS_PER_S]),
                                       np.concatenate([sz, sz]), days=2, bucket_s=60.0)
    assert two_days.window_volumes(T0, MIN, 4) == pytest.approx(w)


def test_vwap_targets_are_proportional_to_expected_volume() -> None:
    p = _parent(600.0, 3)
    ts = T0 + np.array([5, 65, 66, 125, 126, 127]) * NS_PER_S
    curve = VolumeCurve.from_trades(ts, np.full(6, 100.0), bucket_s=60.0)
    pol = VWAPPolicy(p, EngineSettings(), curve)
    plan = pol.decide(_d(p, 0, 0.0))
    assert plan.schedule == pytest.approx([100.0, 200.0, 300.0])
    assert pol.decide(_d(p, 1, 50.0)).schedule[0] == pytest.approx(250.0)  # 300 - 50


def test_vwap_without_any_volume_history_falls_back_to_even_split() -> None:
    p = _parent(600.0, 3)
    curve = VolumeCurve.from_trades(np.zeros(0, np.int64), np.zeros(0))
    plan = VWAPPolicy(p, EngineSettings(), curve).decide(_d(p, 0, 0.0))
    assert plan.schedule == pytest.approx([200.0, 200.0, 200.0])


def test_pov_trades_a_fixed_fraction_of_trailing_volume_and_sweeps_at_the_end() -> None:
    p = _parent(1000.0, 5, max_participation=0.5)
    pol = POVPolicy(p, EngineSettings())
    # forecast 1000/period over 5 periods: rate = min(0.5, 1000 / 5000) = 0.2
    assert pol.decide(_d(p, 0, 0.0, vol=1000.0)).schedule[0] == pytest.approx(200.0)
    assert pol.rate == pytest.approx(0.2)
    # 500 traded in period 0: target 0.2 * (1000 + 500) = 300, 200 filled -> 100
    assert pol.decide(_d(p, 1, 200.0, traded=500.0)).schedule[0] == pytest.approx(100.0)
    # 2000 traded: target 0.2 * 3500 = 700, 250 filled -> 450 (catch-up)
    assert pol.decide(_d(p, 2, 250.0, traded=2000.0)).schedule[0] == pytest.approx(450.0)
    assert pol.decide(_d(p, 4, 700.0, traded=10.0)).schedule[0] == pytest.approx(300.0)


def test_pov_rate_is_capped_by_max_participation_and_waits_at_cold_start() -> None:
    p = _parent(100_000.0, 5, max_participation=0.1)
    pol = POVPolicy(p, EngineSettings())
    assert pol.decide(_d(p, 0, 0.0, vol=0.0)).schedule[0] == 0.0  # no volume seen yet
    assert pol.decide(_d(p, 1, 0.0, vol=1000.0, traded=800.0)).schedule[0] == pytest.approx(100.0)
    assert pol.rate == pytest.approx(0.1)


def test_pov_rate_comes_from_the_volume_curve_when_given() -> None:
    p = _parent(1000.0, 5, max_participation=0.5)
    ts = T0 + np.arange(5) * MIN + NS_PER_S
    curve = VolumeCurve.from_trades(ts, np.full(5, 2000.0), bucket_s=60.0)  # 10,000 expected
    pol = POVPolicy(p, EngineSettings(), curve)
    pol.decide(_d(p, 0, 0.0, vol=1.0))  # the engine's forecast (5 shares in total) is ignored
    assert pol.rate == pytest.approx(0.1)


def test_ac_inventory_is_linear_without_risk_aversion() -> None:
    r = ac_inventory(1000.0, 10, 1e-4, 0.05, 0.0)
    assert r == pytest.approx(1000.0 * (1 - np.arange(11) / 10))


def test_ac_inventory_solves_the_discrete_euler_equation() -> None:
    q, n, gamma, sigma, lam = 1000.0, 20, 1e-4, 0.05, 1e-3
    r = ac_inventory(q, n, gamma, sigma, lam)
    assert r[0] == pytest.approx(q) and r[-1] == pytest.approx(0.0, abs=1e-9)
    # stationarity of sum gamma (r_{j-1} - r_j)^2 + lam sigma^2 r_j^2 in r_1..r_{n-1}
    lhs = gamma * (r[:-2] - 2 * r[1:-1] + r[2:])
    assert lhs == pytest.approx(lam * sigma**2 * r[1:-1], rel=1e-9, abs=1e-12)
    assert np.all(np.diff(r) < 0) and r[1] < q * (1 - 1 / n)  # front-loaded


def test_ac_with_huge_urgency_does_not_overflow() -> None:
    r = ac_inventory(1000.0, 390, 1e-8, 1.0, 10.0)
    assert np.all(np.isfinite(r)) and r[0] == pytest.approx(1000.0) and r[-1] == 0.0


def test_ac_policy_uses_the_parents_risk_aversion() -> None:
    p = _parent(1000.0, 10, risk_aversion=1e-3)
    plan = AlmgrenChrissPolicy(p, EngineSettings()).decide(_d(p, 0, 0.0, sigma=0.05))
    expected = ac_inventory(1000.0, 10, 1e-4, 0.05, 1e-3)
    assert plan.schedule == pytest.approx(-np.diff(expected), abs=1.0)  # whole shares, carried
    assert plan.schedule.tolist() == np.diff(np.rint(1000.0 - expected)).tolist()
    assert plan.schedule.sum() == 1000.0


def test_open_loop_solves_once_and_then_follows_its_plan() -> None:
    p = _parent(1000.0, 10, risk_aversion=1e-2)
    pol = OpenLoopPolicy(p, EngineSettings())
    first = pol.decide(_d(p, 0, 0.0, sigma=0.05))
    assert first.solver.name in ("osqp", "exact") and first.solver.status != "schedule"
    assert first.schedule.sum() == pytest.approx(1000.0, rel=1e-3)
    assert first.schedule[0] > first.schedule[-1]  # risk aversion front-loads
    second = pol.decide(_d(p, 1, first.schedule[0] - 10.0, sigma=0.5, gamma=1.0))
    assert second.solver.status == "schedule"  # no re-solve, even though inputs changed
    assert second.schedule[0] == pytest.approx(first.schedule[1] + 10.0, rel=1e-6)


def test_whole_lots_carries_the_rounding_so_children_are_lots_that_add_up() -> None:
    # TWAP of 1000 shares over 3 periods: 333.3, 666.7, 1000 -> 333, 667, 1000
    assert whole_lots(1000.0 * np.arange(1, 4) / 3, 1000.0, 1.0).tolist() == [333.0, 667.0, 1000.0]
    # lot 100, 1050 shares over 4 periods: 262.5, 525, 787.5, 1050 -> whole lots, odd tail last
    t = whole_lots(1050.0 * np.arange(1, 5) / 4, 1050.0, 100.0)
    assert t.tolist() == [300.0, 500.0, 800.0, 1050.0]
    assert whole_lots(2000.0, 1050.0, 100.0) == 1050.0 and whole_lots(-5.0, 1050.0, 100.0) == 0.0
    assert whole_lots(1049.0, 1050.0, 100.0) == 1000.0  # never a partial lot before the end


@settings(max_examples=200, deadline=None)
@given(weights=st.lists(st.floats(0.0, 1e6), min_size=1, max_size=60), lots=st.integers(1, 5000),
       lot=st.sampled_from([1.0, 10.0, 100.0, 0.5]))
def test_whole_lots_increments_are_lots_and_sum_to_the_quantity_exactly(
        weights: list[float], lots: int, lot: float) -> None:
    q = lots * lot
    w = np.asarray(weights) + 1e-9
    raw = q * np.cumsum(w) / w.sum()
    raw[-1] = q
    t = whole_lots(raw, q, lot)
    steps = np.diff(t, prepend=0.0)
    assert np.all(steps >= 0) and np.all(steps / lot == np.rint(steps / lot))
    assert steps.sum() == q and t[-1] == q
    assert np.all(np.abs(t - np.minimum(raw, q)) <= lot / 2 + 1e-9 * q)


def test_vwap_targets_end_exactly_at_the_quantity() -> None:
    p = _parent(50_000.0, 7)
    ts = T0 + (np.arange(7) * 60 + 1) * NS_PER_S
    curve = VolumeCurve.from_trades(ts, np.array([3.0, 7.0, 11.0, 13.0, 17.0, 19.0, 23.0]), bucket_s=60.0)
    plan = VWAPPolicy(p, EngineSettings(), curve).decide(_d(p, 0, 0.0))
    assert plan.schedule.sum() == 50_000.0 and np.all(plan.schedule == np.rint(plan.schedule))


def test_policy_factory_knows_every_strategy_and_rejects_others() -> None:
    curve = VolumeCurve.from_trades(np.array([T0]), np.array([1.0]))
    p = _parent()
    for name in ("mpc", "twap", "vwap", "pov", "ac", "open-loop"):
        assert policy_factory(name, volume_curve=curve)(p, EngineSettings()).name == name
    with pytest.raises(ValueError, match="unknown strategy"):
        policy_factory("iceberg")
    with pytest.raises(ValueError, match="volume curve"):
        policy_factory("vwap")
