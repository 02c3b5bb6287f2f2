"""Solver faults (issue 7 item 2): forced OSQP failures fall back as DESIGN.md section 4 says and are counted.

Order of the fallback plans: the exact separable oracle (no risk term, valid
data), else the previous plan shifted, else an even split under the caps.
The end-to-end check (a real agent process with ``max_iter = 1`` completing a
parent order, fallbacks in /metrics) is ``tests/integration/test_solver_faults.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agent.app.config import load_config
from agent.core.engine import EngineSettings, ExecutionEngine
from agent.core.model import Fill, ParentOrder
from agent.core.mpc.oracle import solve_separable_exact
from agent.core.mpc.qp import RecedingHorizonQP, SolverSettings
from tests.unit.agent.books import NS, T0, ladder_book

N = 10
BETA, GAMMA, CAP = np.full(N, 0.01), np.linspace(1e-5, 3e-5, N), np.full(N, 500.0)


@pytest.mark.parametrize(("settings", "reason"), [
    (SolverSettings(max_iter=1), "maximum_iterations_reached"),
    (SolverSettings(time_limit_s=1e-9), "run_time_limit_reached"),
])
def test_qp_forced_failure_without_risk_term_falls_back_to_the_exact_oracle(settings: SolverSettings,
                                                                            reason: str) -> None:
    qp = RecedingHorizonQP(N, settings=settings)
    plan = qp.solve(1000.0, BETA, GAMMA, CAP)
    exact, _ = solve_separable_exact(1000.0, BETA, GAMMA, CAP)
    assert (plan.fallback, plan.solver.name, plan.solver.status) == (reason, "exact", reason)
    np.testing.assert_allclose(plan.schedule, exact)
    assert qp.fallbacks == {reason: 1}


def test_qp_forced_failure_with_risk_term_shifts_the_previous_plan() -> None:
    qp = RecedingHorizonQP(N, settings=SolverSettings(max_iter=1))
    first = qp.solve(1000.0, BETA, GAMMA, CAP, risk_aversion=1.0, sigma=0.1)
    assert first.solver.name == "fallback-even"  # no previous plan yet
    np.testing.assert_allclose(first.schedule, np.full(N, 100.0))
    second = qp.solve(900.0, BETA[1:], GAMMA[1:], CAP[1:], risk_aversion=1.0, sigma=0.1)
    assert second.solver.name == "fallback-shifted"
    assert second.schedule.sum() == pytest.approx(900.0)
    assert qp.fallbacks == {"maximum_iterations_reached": 2}


def test_qp_nan_in_the_impact_forecast_is_invalid_input_and_never_uses_the_nan() -> None:
    qp = RecedingHorizonQP(N)
    ok = qp.solve(1000.0, BETA, GAMMA, CAP)
    assert ok.fallback is None
    beta = BETA[1:].copy()
    beta[3] = np.nan
    plan = qp.solve(900.0, beta, GAMMA[1:], CAP[1:])
    assert (plan.fallback, plan.solver.name) == ("invalid_input", "fallback-shifted")
    assert np.all(np.isfinite(plan.schedule)) and plan.schedule.sum() == pytest.approx(900.0)
    assert np.all(plan.schedule <= CAP[1:] + 1e-9)
    fresh = RecedingHorizonQP(N).solve(1000.0, np.full(N, np.nan), GAMMA, CAP)
    assert (fresh.fallback, fresh.solver.name) == ("invalid_input", "fallback-even")


def test_config_solver_settings_reach_the_engine() -> None:
    cfg = load_config(overrides={"solver": {"max_iter": 1, "time_limit_s": 0.001}})
    solver = cfg.engine_settings().solver
    assert (solver.max_iter, solver.time_limit_s) == (1, 0.001)


def _run_engine(engine: ExecutionEngine, parent: ParentOrder) -> list[float]:
    """One-second books with trades; every child order is filled in full before the next period."""
    ts = parent.start_ns + np.arange(0, parent.n_periods * 60) * NS
    book = ladder_book(ts, mid=50.0, trade_every=2, trade_size=2000.0, symbol=parent.symbol)
    engine.submit(parent)
    sent: list[float] = []
    for k in range(parent.n_periods):
        chunk = book[k * 60:(k + 1) * 60]
        for child in engine.on_book(chunk, symbol=parent.symbol).children:
            sent.append(child.quantity)
            engine.on_fill(Fill(f"f{k}", child.child_order_id, parent.parent_id, child.quantity,
                                child.limit_price, int(chunk.ts_event[0])))
    return sent


@pytest.mark.parametrize("risk_aversion", [0.0, 1e-4])
def test_engine_with_a_failing_solver_still_completes_the_parent_and_counts_fallbacks(risk_aversion: float) -> None:
    settings = dataclasses.replace(EngineSettings(), solver=SolverSettings(max_iter=1))
    engine = ExecutionEngine(settings)
    parent = ParentOrder("P1", "TEST", "buy", 5000.0, T0, T0 + 600 * NS, period_s=60.0, max_participation=0.5,
                         risk_aversion=risk_aversion)
    sent = _run_engine(engine, parent)
    st = engine.parents["P1"]
    assert st.status == "completed" and sum(sent) == pytest.approx(5000.0)
    fallbacks = {k: v for k, v in engine.counters.items() if k.startswith("fallback:")}
    assert fallbacks and sum(fallbacks.values()) >= 5


def test_engine_nan_impact_forecast_falls_back_and_keeps_trading(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.core import decision

    engine = ExecutionEngine(EngineSettings())
    real = decision.impact_forecast

    def poisoned(*args: object, **kw: object) -> tuple[np.ndarray, np.ndarray]:
        beta, gamma = real(*args, **kw)  # type: ignore[arg-type]
        beta = beta.copy()
        beta[-1] = np.nan
        return beta, gamma

    monkeypatch.setattr(decision, "impact_forecast", poisoned)
    parent = ParentOrder("P1", "TEST", "buy", 3000.0, T0, T0 + 600 * NS, period_s=60.0, max_participation=0.5)
    sent = _run_engine(engine, parent)
    assert engine.parents["P1"].status == "completed" and sum(sent) == pytest.approx(3000.0)
    assert engine.counters["fallback:invalid_input"] >= 5
