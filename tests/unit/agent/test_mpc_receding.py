"""RecedingHorizonQP over a whole parent order: warm starts, setup count, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from agent.core.mpc.oracle import even_split, solve_separable_exact
from agent.core.mpc.qp import RecedingHorizonQP, SolverSettings, _Osqp

UNTIMED = SolverSettings(time_limit_s=10.0)
"""A wall-clock limit no solve reaches: these tests count iterations, which a loaded machine must not turn into fallbacks."""


def realistic_day(seed: int, n: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """U-shaped volume, spread falling then rising, depth following volume, 10% caps."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)
    vol = 12_800 * (1.6 - 2.4 * t + 2.4 * t * t) * rng.lognormal(0, 0.2, n)
    beta = 0.01 * (1.3 - 1.0 * t + 0.9 * t * t) * rng.lognormal(0, 0.1, n)
    gamma = 5e-6 * 12_800 / vol
    return 2e5 * n / 390, beta, gamma, 0.1 * vol


def run_order(n: int, w: float, seed: int, drift: float = 0.03) -> tuple[RecedingHorizonQP, list]:
    """Every period: forecasts drift by ``drift`` (lognormal), fills are 90-100% of the plan."""
    q, beta, gamma, cap = realistic_day(seed, n)
    rng = np.random.default_rng(seed + 1000)
    qp = RecedingHorizonQP(n, settings=UNTIMED)
    remaining, plans = q, []
    for t in range(n):
        d = np.exp(drift * rng.standard_normal((3, n - t)))
        plan = qp.solve(remaining, beta[t:] * d[0], gamma[t:] * d[1], cap[t:] * d[2],
                        risk_aversion=w, sigma=1.0)
        plans.append(plan)
        assert plan.schedule.size == n - t
        remaining -= plan.schedule[0] * rng.uniform(0.9, 1.0)
    return qp, plans


@pytest.mark.parametrize(("n", "w", "seed"), [(390, 0.0, 0), (390, 1e-10, 1), (390, 0.0, 2),
                                              (60, 1e-10, 3), (45, 0.0, 4)])
def test_receding_horizon_drifting_parameters_every_warm_resolve_within_25_iterations(
        n: int, w: float, seed: int) -> None:
    qp, plans = run_order(n, w, seed)
    assert qp.setup_calls == 1  # built once per parent order
    assert not qp.fallbacks
    assert all(p.solver.name == "osqp" and p.solver.status == "solved" for p in plans)
    iters = [p.solver.iterations for p in plans[1:]]
    assert max(iters) <= 25, f"iterations {sorted(set(iters))}"


def test_receding_horizon_warm_start_is_previous_primal_and_dual_shifted_one_period() -> None:
    n = 20  # unblocked: slot = period, so the shift is exactly one slot
    q, beta, gamma, cap = realistic_day(0, n)
    qp = RecedingHorizonQP(n, settings=UNTIMED)
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real = qp._solver.warm_start

    def spy(x: np.ndarray, y: np.ndarray) -> None:
        seen.append((x.copy(), y.copy()))
        real(x, y)

    qp._solver.warm_start = spy  # type: ignore[method-assign]
    first = qp.solve(q, beta, gamma, cap, risk_aversion=1e-10, sigma=1.0)
    y_first = qp._solver.solve()[4]  # same problem again: the same duals
    remaining = q - first.schedule[0]
    qp.solve(remaining, beta[1:], gamma[1:], cap[1:], risk_aversion=1e-10, sigma=1.0)
    x_ws, y_ws = seen[1]
    unit = remaining / (n - 1)
    # primal: the previous plan's periods 1.. (already summing to the remainder), in slot units
    assert np.allclose(x_ws[: n - 1] * unit, first.schedule[1:], rtol=1e-9)
    assert x_ws[n - 1] == 0.0  # the slot past the deadline
    # dual: inventory and cap multipliers move one slot earlier (up to the unit change)
    ratio = y_ws[: n - 1] / np.where(y_first[1:n] == 0, np.nan, y_first[1:n])
    ratio = ratio[np.isfinite(ratio)]
    assert ratio.size > 5 and np.allclose(ratio, ratio[0], rtol=1e-6)


def test_switching_risk_on_and_off_never_rebuilds_the_problem() -> None:
    q, beta, gamma, cap = realistic_day(0, 80)
    qp = RecedingHorizonQP(80, settings=UNTIMED)
    for t, w in enumerate([0.0, 1e-9, 0.0, 1e-10, 0.0]):
        plan = qp.solve(q, beta[t:], gamma[t:], cap[t:], risk_aversion=w, sigma=1.0)
        assert plan.fallback is None
    assert qp.setup_calls == 1


def test_solve_horizon_jumps_by_several_periods_replans_without_rebuild() -> None:
    q, beta, gamma, cap = realistic_day(1, 120)
    qp = RecedingHorizonQP(120, settings=UNTIMED)
    for t in (0, 1, 7, 8, 60, 119):
        plan = qp.solve(q / 2, beta[t:], gamma[t:], cap[t:])
        x, _ = solve_separable_exact(q / 2, beta[t:], gamma[t:], cap[t:])
        assert plan.fallback is None
        assert abs(plan.schedule[0] - x[0]) <= 0.01 * max(x[0], q / 2 / (120 - t))
    assert qp.setup_calls == 1


def test_solve_caps_too_tight_reports_shortfall_and_trades_every_cap() -> None:
    n = 70
    cap = np.full(n, 100.0)
    qp = RecedingHorizonQP(n, settings=UNTIMED)
    plan = qp.solve(10_000.0, np.full(n, 0.01), np.full(n, 1e-5), cap, risk_aversion=1e-9,
                    sigma=1.0)
    assert plan.fallback is None
    assert plan.shortfall == pytest.approx(3000.0, abs=1e-6)
    assert np.allclose(plan.schedule, cap, rtol=1e-9)


def test_caps_that_bind_everywhere_are_the_plan_without_a_solve_or_a_fallback() -> None:
    """``sum(cap) < R``: the one feasible plan. Seen in ``bench/engine.py`` (FROG, 1,000 parents):
    OSQP reported such a one-point feasible set primal infeasible and the plan went to a fallback,
    logged as a warning."""
    beta = np.r_[0.1376, np.full(18, 0.0347)]
    gamma = np.r_[3.6723e-05, np.full(18, 8.9567e-05)]
    cap = np.full(19, 166.6544)
    qp = RecedingHorizonQP(39, settings=UNTIMED)
    qp.solve(3800.0, np.full(20, 0.0347), np.full(20, 8.9567e-05), np.full(20, 190.0))  # a previous plan
    plan = qp.solve(3600.0, beta, gamma, cap)
    assert plan.fallback is None and dict(qp.fallbacks) == {}
    assert (plan.solver.name, plan.solver.status, plan.solver.iterations) == ("closed_form", "caps_bind", 0)
    assert np.array_equal(plan.schedule, cap)
    assert plan.shortfall == pytest.approx(3600.0 - cap.sum(), rel=1e-12)


def test_solve_first_slot_limit_caps_period_zero_and_moves_volume_later() -> None:
    n = 30
    beta, gamma = np.full(n, 0.01), np.full(n, 1e-5)
    qp = RecedingHorizonQP(n, settings=UNTIMED)
    plan = qp.solve(3000.0, beta, gamma, np.full(n, np.inf), first_slot_limit=20.0)
    assert plan.schedule[0] == pytest.approx(20.0, abs=1e-6)
    assert plan.schedule.sum() == pytest.approx(3000.0, rel=1e-9)


def test_solve_nothing_left_returns_zero_plan_without_solving() -> None:
    qp = RecedingHorizonQP(10, settings=UNTIMED)
    plan = qp.solve(0.0, np.full(10, 0.01), np.full(10, 1e-5), np.full(10, np.inf))
    assert plan.solver.name == "trivial" and np.all(plan.schedule == 0)
    assert qp.solve(5.0, np.zeros(0), np.zeros(0), np.zeros(0)).schedule.size == 0


# ------------------------------------------------------------------ fallbacks
def instance(n: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.full(n, 0.01), np.linspace(1e-5, 3e-5, n), np.full(n, 400.0)


@pytest.mark.parametrize(("settings", "reason"), [
    (SolverSettings(max_iter=1), "maximum_iterations_reached"),
    (SolverSettings(time_limit_s=1e-9), "run_time_limit_reached"),
])
def test_solver_failure_separable_falls_back_to_exact_kkt_and_counts_reason(
        settings: SolverSettings, reason: str) -> None:
    beta, gamma, cap = instance()
    qp = RecedingHorizonQP(40, settings=settings)
    plan = qp.solve(10_000.0, beta, gamma, cap)
    x, shortfall = solve_separable_exact(10_000.0, beta, gamma, cap)
    assert plan.fallback == reason and plan.solver.name == "exact"
    assert np.allclose(plan.schedule, x) and plan.shortfall == shortfall
    assert qp.fallbacks == {reason: 1}


def test_solver_failure_with_risk_uses_even_split_then_previous_plan_shifted() -> None:
    beta, gamma, cap = instance()
    qp = RecedingHorizonQP(40, settings=SolverSettings(max_iter=1))
    first = qp.solve(10_000.0, beta, gamma, cap, risk_aversion=1e-8, sigma=1.0)
    assert first.solver.name == "fallback-even"
    assert np.allclose(first.schedule, even_split(10_000.0, cap)[0])
    second = qp.solve(9_700.0, beta[1:], gamma[1:], cap[1:], risk_aversion=1e-8, sigma=1.0)
    assert second.solver.name == "fallback-shifted"
    assert second.schedule.sum() == pytest.approx(9_700.0)
    assert np.all(second.schedule <= cap[1:] + 1e-9)
    assert qp.fallbacks["maximum_iterations_reached"] == 2


def test_solver_failure_shifted_plan_keeps_shape_of_previous_plan() -> None:
    n = 40
    beta, gamma = np.full(n, 0.01), np.linspace(1e-5, 5e-5, n)  # front-loaded optimum
    good = RecedingHorizonQP(n)
    prev = good.solve(10_000.0, beta, gamma, np.full(n, np.inf), risk_aversion=1e-9, sigma=1.0)
    good.settings = SolverSettings(max_iter=1)
    good._solver.py.update_settings(max_iter=1)
    nxt = good.solve(10_000.0 - prev.schedule[0], beta[1:], gamma[1:], np.full(n - 1, np.inf),
                     risk_aversion=1e-9, sigma=1.0)
    assert nxt.solver.name == "fallback-shifted"
    assert np.allclose(nxt.schedule, prev.schedule[1:], rtol=1e-9)


@pytest.mark.parametrize("where", ["beta", "gamma", "cap", "remaining", "sigma"])
def test_solve_nan_in_data_falls_back_counts_invalid_input_and_never_raises(where: str) -> None:
    beta, gamma, cap = instance()
    args = {"beta": beta.copy(), "gamma": gamma.copy(), "cap": cap.copy()}
    remaining, sigma = 10_000.0, 1.0
    if where in args:
        args[where][3] = np.nan
    elif where == "remaining":
        remaining = np.nan
    else:
        sigma = np.nan
    qp = RecedingHorizonQP(40)
    plan = qp.solve(remaining, args["beta"], args["gamma"], args["cap"], risk_aversion=1e-9,
                    sigma=sigma)
    assert plan.fallback == "invalid_input" and plan.solver.name == "fallback-even"
    assert np.all(np.isfinite(plan.schedule)) and np.all(plan.schedule >= 0)
    assert qp.fallbacks == {"invalid_input": 1}
    # a NaN cap is unknown capacity: never used
    if where == "cap":
        assert plan.schedule[3] == 0.0


def test_solve_after_invalid_input_recovers_with_osqp() -> None:
    beta, gamma, cap = instance()
    qp = RecedingHorizonQP(40)
    bad = beta.copy()
    bad[0] = np.inf
    assert qp.solve(10_000.0, bad, gamma, cap).fallback == "invalid_input"
    plan = qp.solve(9_000.0, beta[1:], gamma[1:], cap[1:])
    assert plan.fallback is None and plan.solver.name == "osqp"
    assert qp.setup_calls == 1


def test_direct_and_public_osqp_paths_give_identical_plans() -> None:
    q, beta, gamma, cap = realistic_day(2, 120)
    fast, public = RecedingHorizonQP(120), RecedingHorizonQP(120)
    assert fast._solver.ext is not None  # the installed osqp exposes the compiled solver
    inf = np.full(public._solver.py.m, np.inf)
    public._solver = _Osqp(public._solver.py._derivative_cache["P"],
                           public._solver.py._derivative_cache["A"], inf,
                           public.settings.osqp_kwargs(), direct=False)
    assert public._solver.ext is None
    for t in range(5):
        a = fast.solve(q * (1 - t / 120), beta[t:], gamma[t:], cap[t:], risk_aversion=1e-10, sigma=1.0)
        b = public.solve(q * (1 - t / 120), beta[t:], gamma[t:], cap[t:], risk_aversion=1e-10,
                         sigma=1.0)
        assert np.array_equal(a.schedule, b.schedule)
        assert a.solver.iterations == b.solver.iterations


def test_solve_without_risk_aversion_ignores_an_unknown_volatility() -> None:
    beta, gamma, cap = instance()
    qp = RecedingHorizonQP(40)
    plan = qp.solve(10_000.0, beta, gamma, cap, risk_aversion=0.0, sigma=float("nan"))
    assert plan.fallback is None and plan.solver.name == "osqp"
    assert np.isfinite(plan.objective)
