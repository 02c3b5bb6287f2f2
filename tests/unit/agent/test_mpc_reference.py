"""agent.core.mpc.qp against an independent cvxpy/Clarabel reference and the exact KKT oracle.

The reference is the textbook formulation in periods (no blocking, no scaling
tricks of ours): impact + risk, caps, and completion through a terminal slack
with a large linear penalty, solved by Clarabel at 1e-9 tolerances.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from agent.core.mpc.oracle import model_cost, solve_separable_exact
from agent.core.mpc.qp import RecedingHorizonQP, SolverSettings

N_INSTANCES = 220


def reference(r: float, beta: np.ndarray, gamma: np.ndarray, cap: np.ndarray,
              w: float) -> tuple[np.ndarray, float]:
    """cvxpy/Clarabel solution (x, shortfall) of the penalised-slack formulation."""
    n = beta.size
    unit = r / n
    c = unit * beta.mean() + unit**2 * gamma.mean() + w * r * r / 3
    x = cp.Variable(n)
    s = cp.Variable(nonneg=True)
    inv = n - cp.cumsum(x)
    obj = ((unit * beta) @ x + cp.sum(cp.multiply(gamma * unit**2, cp.square(x)))
           + w * unit**2 * cp.sum_squares(inv) + 1e4 * c * s)
    cons = [x >= 0, cp.sum(x) + s == n]
    fin = np.isfinite(cap)
    if fin.any():
        cons.append(x[fin] <= cap[fin] / unit)
    cp.Problem(cp.Minimize(obj / c), cons).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9)
    assert x.value is not None
    return np.clip(x.value * unit, 0, None), float(s.value) * unit


def instance(seed: int) -> dict:
    """Seeded random instance; the seed picks separable/risk, binding caps, infeasible."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 90))
    r = float(10 ** rng.uniform(2, 6.5))
    prof = 1 + 0.6 * np.cos(np.linspace(0, 2 * np.pi, n) + rng.uniform(0, 6))
    beta = rng.uniform(0.003, 0.05) * prof * rng.uniform(0.8, 1.2, n)
    gamma = rng.uniform(0.5, 50) / r * prof * rng.uniform(0.7, 1.3, n)
    kind = seed % 4  # 0: no caps, 1: loose caps, 2: binding caps, 3: impossible completion
    tight = {0: np.inf, 1: 4.0, 2: 1.15, 3: 0.8}[kind]
    cap = np.full(n, np.inf) if kind == 0 else tight * r / n * rng.uniform(0.6, 1.4, n)
    risk = seed % 3 != 0
    w = float(gamma.mean() * 10 ** rng.uniform(-3, 0.5)) if risk else 0.0
    return dict(r=r, beta=beta, gamma=gamma, cap=cap, w=w, n=n, kind=kind)


@pytest.mark.parametrize("seed", range(N_INSTANCES))
def test_mpc_solve_random_instance_matches_clarabel_reference(seed: int) -> None:
    d = instance(seed)
    qp = RecedingHorizonQP(d["n"], settings=SolverSettings(fine_slots=d["n"]))
    plan = qp.solve(d["r"], d["beta"], d["gamma"], d["cap"], risk_aversion=d["w"], sigma=1.0)
    x_ref, s_ref = reference(d["r"], d["beta"], d["gamma"], d["cap"], d["w"])
    obj_ref = model_cost(x_ref, d["beta"], d["gamma"], remaining=d["r"], risk_aversion=d["w"],
                         sigma=1.0)
    r, n = d["r"], d["n"]
    # kind 3 (sum(cap) < R): every cap is the one feasible plan, set without a solve
    assert plan.fallback is None and plan.solver.name == ("closed_form" if d["kind"] == 3 else "osqp")
    assert abs(plan.objective - obj_ref) <= 1e-4 * abs(obj_ref)
    assert abs(plan.shortfall - s_ref) <= 1e-6 * r
    assert abs(plan.schedule.sum() + plan.shortfall - r) <= 1e-6 * r
    assert abs(plan.schedule[0] - x_ref[0]) <= 0.005 * r / n
    assert np.all(plan.schedule >= 0) and np.all(plan.schedule <= d["cap"] * (1 + 1e-9))
    if d["kind"] == 3:
        assert plan.shortfall > 0
    if d["w"] == 0.0:  # separable: the exact oracle agrees too
        x_ex, s_ex = solve_separable_exact(r, d["beta"], d["gamma"], d["cap"])
        assert abs(s_ex - plan.shortfall) <= 1e-6 * r
        assert abs(x_ex[0] - plan.schedule[0]) <= 0.005 * r / n
        obj_ex = model_cost(x_ex, d["beta"], d["gamma"])
        assert abs(plan.objective - obj_ex) <= 1e-4 * abs(obj_ex)


@pytest.mark.parametrize("seed", range(0, N_INSTANCES, 3))
def test_exact_oracle_random_separable_instance_matches_clarabel(seed: int) -> None:
    d = instance(seed)
    x_ex, s_ex = solve_separable_exact(d["r"], d["beta"], d["gamma"], d["cap"])
    x_ref, s_ref = reference(d["r"], d["beta"], d["gamma"], d["cap"], 0.0)
    scale = d["r"] / d["n"]
    assert np.max(np.abs(x_ex - x_ref)) <= 1e-5 * scale
    assert abs(s_ex - s_ref) <= 1e-6 * d["r"]


def test_reference_set_covers_risk_binding_caps_and_infeasible_cases() -> None:
    kinds = [(instance(s)["kind"], instance(s)["w"] > 0) for s in range(N_INSTANCES)]
    for kind in range(4):
        for risk in (False, True):
            assert sum(1 for k in kinds if k == (kind, risk)) >= 15


def test_binding_caps_instances_really_bind() -> None:
    binding = 0
    for seed in range(2, N_INSTANCES, 4):
        d = instance(seed)
        x, _ = solve_separable_exact(d["r"], d["beta"], d["gamma"], d["cap"])
        binding += int(np.any(np.isclose(x, d["cap"], rtol=1e-9)))
    assert binding >= 40


def test_polish_failures_in_reference_set_are_finished_by_the_active_set_step() -> None:
    failures = refined = 0
    for seed in range(0, N_INSTANCES, 2):
        d = instance(seed)
        qp = RecedingHorizonQP(d["n"], settings=SolverSettings(fine_slots=d["n"]))
        qp.solve(d["r"], d["beta"], d["gamma"], d["cap"], risk_aversion=d["w"], sigma=1.0)
        failures += qp.polish_failures
        refined += qp.refinements
    # the accuracy test above therefore covers the refinement path, not only OSQP's polish
    assert failures >= 10
    assert refined == failures


@pytest.mark.parametrize("seed", range(1, N_INSTANCES, 11))
def test_mpc_without_osqp_polish_active_set_finish_still_matches_reference(seed: int) -> None:
    d = instance(seed)
    qp = RecedingHorizonQP(d["n"], settings=SolverSettings(fine_slots=d["n"], polish=False))
    plan = qp.solve(d["r"], d["beta"], d["gamma"], d["cap"], risk_aversion=d["w"], sigma=1.0)
    x_ref, _ = reference(d["r"], d["beta"], d["gamma"], d["cap"], d["w"])
    obj_ref = model_cost(x_ref, d["beta"], d["gamma"], remaining=d["r"], risk_aversion=d["w"],
                         sigma=1.0)
    assert qp.refinements == (0 if d["kind"] == 3 else 1)  # kind 3: every cap, no solve to finish
    assert abs(plan.objective - obj_ref) <= 1e-6 * abs(obj_ref)
    assert abs(plan.schedule[0] - x_ref[0]) <= 1e-4 * d["r"] / d["n"]
