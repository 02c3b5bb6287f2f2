"""One optimal schedule, solved once (``mpc-agent plan``, the offline use case)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.core.errors import ConfigError
from agent.core.model import FloatArray
from agent.core.mpc.oracle import model_cost
from agent.core.mpc.qp import RecedingHorizonQP, SolverSettings


def plan_offline(quantity: float, beta: npt.ArrayLike, gamma: npt.ArrayLike,
                 cap: npt.ArrayLike | None = None, *, risk_aversion: float = 0.0,
                 sigma: float = 0.0, settings: SolverSettings | None = None) -> dict[str, Any]:
    """One unblocked optimal schedule: the ``mpc-agent plan`` JSON (DESIGN.md section 6).

    Returns ``{"schedule", "cost", "twap_cost", "shortfall", "solver": {"name",
    "status", "iterations", "solve_us"}}``; costs are the model objective in
    dollars (risk term included when ``risk_aversion * sigma > 0``), twap_cost
    that of the even split ``Q / N``.
    """
    b = np.asarray(beta, dtype=np.float64).reshape(-1)
    g = np.asarray(gamma, dtype=np.float64).reshape(-1)
    n = b.size
    u = np.full(n, np.inf) if cap is None else np.asarray(cap, dtype=np.float64).reshape(-1)
    _check_offline(quantity, b, g, u, risk_aversion, sigma)
    settings = settings or SolverSettings()
    wide = SolverSettings(**{**settings.__dict__, "fine_slots": n, "coarse_slots": 0})
    qp = RecedingHorizonQP(n, settings=wide)
    plan = qp.solve(quantity, b, g, u, risk_aversion=risk_aversion, sigma=sigma)
    twap = np.full(n, quantity / n)
    kw = dict(remaining=quantity, risk_aversion=risk_aversion, sigma=sigma)
    return {
        "schedule": [float(v) for v in plan.schedule],
        "cost": model_cost(plan.schedule, b, g, **kw),
        "twap_cost": model_cost(twap, b, g, **kw),
        "shortfall": float(plan.shortfall),
        "solver": {"name": plan.solver.name, "status": plan.solver.status,
                   "iterations": plan.solver.iterations, "solve_us": plan.solver.solve_us},
        "fallback": plan.fallback,
    }


def _check_offline(quantity: float, b: FloatArray, g: FloatArray, u: FloatArray,
                   risk_aversion: float, sigma: float) -> None:
    """Reject inputs ``plan_offline`` cannot plan with a message that says how to fix them."""
    n = b.size
    if n == 0:
        raise ConfigError("need at least one period: beta/gamma are empty")
    if g.size != n or u.size != n:
        raise ConfigError(f"beta, gamma and cap must have the same length (got {n}, {g.size}, "
                          f"{u.size}); one entry per period")
    if not (math.isfinite(quantity) and quantity > 0):
        raise ConfigError(f"quantity must be a positive number of shares, got {quantity}")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(g)) and np.all(g > 0)):
        raise ConfigError("beta must be finite and gamma finite and > 0 in every period "
                          "(gamma is the quadratic impact coefficient, $/share^2)")
    if np.any(np.isnan(u)) or np.any(u < 0):
        raise ConfigError("cap must be >= 0 in every period (null/omitted for no cap)")
    if not (risk_aversion >= 0 and sigma >= 0 and math.isfinite(risk_aversion * sigma)):
        raise ConfigError("risk_aversion and sigma must be finite and >= 0")
