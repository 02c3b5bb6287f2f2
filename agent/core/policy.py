"""Policies and their inputs: what the engine asks at each decision.

:class:`EngineSettings` (the engine's parameters), :class:`DecisionInput`
(everything a policy may use for one decision), the :class:`Policy` protocol
(closed-loop MPC here; TWAP, VWAP, POV, Almgren-Chriss and open-loop in
``replay.strategies``) and :class:`DecisionRecord` (one decision, for TCA).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from agent.core import risk
from agent.core.forecast.reversion import ReversionSettings
from agent.core.model import FloatArray, ParentOrder, Plan
from agent.core.mpc.qp import RecedingHorizonQP, SolverSettings


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Engine parameters (units in the names). Built from ``agent.app.config`` by the CLI.

    Forecasts (``forecast``): ``"reverting"`` prices slot 0 from the decision
    snapshot's own book walk and lets later slots revert to the long-run level
    times the intraday profile at the persistence estimated online
    (:mod:`agent.core.forecast.cost_forecast`, parameters in ``reversion``), the
    volume behind the caps likewise; the default: its controllable cost (spread +
    impact) is 16-34% below TWAP's on the embedded sample and 7-16% on FROG,
    paired by window, where ``ewma`` is within 2% (``bench/mpc_ablation.py``).
    ``"ewma"`` is the earlier model: every
    slot uses the estimate of half-life ``impact_half_life_s`` times the
    intraday profile (and the volume EWMA of ``volume_half_life_s``). Optionally
    (``impact_now_half_life_s``) the current slot uses a second, faster
    estimate, so the planner trades more when the book is cheaper than its
    recent level; off by default: on the synthetic sample it only moved
    volume in time (a timing bet whose sign follows the drift, no cost
    saving), see ``bench/mpc_ablation.py``. ``min_convexity`` floors gamma at that fraction of
    ``beta / (R / P)`` (the quadratic term is at least that share of the
    linear one at the even slice): it makes the optimum unique, equal to TWAP
    when forecasts are flat, instead of an arbitrary point of a flat optimum.
    ``max_child_multiple`` is the model's trust region: model-based policies
    plan no slot above that multiple of the even slice ``R / P``, the range
    the impact curve was fitted on (``size_grid_multiple``).
    """

    max_participation: float = 0.2
    forecast: Literal["reverting", "ewma"] = "reverting"
    reversion: ReversionSettings = field(default_factory=ReversionSettings)
    impact_half_life_s: float = 300.0
    impact_now_half_life_s: float | None = None
    min_convexity: float = 0.01
    max_child_multiple: float = 4.0
    volume_half_life_s: float = 1800.0
    volatility_half_life_s: float = 1800.0
    penalty_ticks: float = 3.0
    tick: float = 0.01
    size_grid_multiple: float = 4.0
    risk: risk.RiskLimits = field(default_factory=risk.RiskLimits)
    solver: SolverSettings = field(default_factory=SolverSettings)


@dataclass(frozen=True, slots=True)
class DecisionInput:
    """Everything a policy may use for one decision (arrays cover the remaining periods)."""

    parent: ParentOrder
    period_index: int
    periods_left: int
    remaining: float
    filled: float
    beta: FloatArray
    gamma: FloatArray
    cap: FloatArray
    volume_forecast: FloatArray
    sigma: float
    mid: float
    ts_ns: int
    traded_since_last_decision: float
    max_child: float = float("inf")


class Policy(Protocol):
    """Decides the schedule for the remaining periods; ``schedule[0]`` is traded now."""

    name: str

    def decide(self, d: DecisionInput) -> Plan: ...


PolicyFactory = Callable[[ParentOrder, EngineSettings], Policy]


class MPCPolicy:
    """Closed-loop receding-horizon QP: one OSQP problem per parent order, re-solved each period."""

    name = "mpc"

    def __init__(self, parent: ParentOrder, settings: EngineSettings) -> None:
        self.qp = RecedingHorizonQP(parent.n_periods, settings=settings.solver)

    def decide(self, d: DecisionInput) -> Plan:
        return self.qp.solve(
            d.remaining, d.beta, d.gamma, np.minimum(d.cap, d.max_child),
            risk_aversion=d.parent.risk_aversion, sigma=d.sigma,
        )


class EndedPolicy:
    """The policy of a parent restored after it ended: it never decides."""

    name = "ended"

    def decide(self, d: DecisionInput) -> Plan:
        raise RuntimeError("an ended parent does not decide")


ENDED_POLICY = EndedPolicy()


def mpc_policy(parent: ParentOrder, settings: EngineSettings) -> Policy:
    return MPCPolicy(parent, settings)


CHILD_ORDER = "child_order"
ZERO_QUANTITY = "zero_quantity"


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One period's decision, kept for TCA and debugging."""

    parent_id: str
    period_index: int
    ts_ns: int
    remaining_before: float
    planned: float
    quantity: float
    cap: float
    beta: float
    gamma: float
    sigma: float
    mid: float
    plan: Plan | None
    skipped: str | None = None
    """Why the period sent no child order: a refused book (``stale_book``, ``crossed_book``,
    ``locked_book``, ``empty_side``) or the kill switch, before any plan; ``limit_price`` when the
    plan had shares for it but the parent's limit leaves no price to send. None otherwise."""

    @property
    def outcome(self) -> str:
        """What became of the period (the ``outcome`` label of ``mpc_agent_decisions_total``):
        ``child_order``, ``zero_quantity`` (nothing to send: the plan's share, clamped and rounded
        to the lot, is zero) or the ``skipped`` reason."""
        if self.skipped is not None:
            return self.skipped
        return CHILD_ORDER if self.quantity > 0 else ZERO_QUANTITY
