"""Benchmark execution strategies as :class:`agent.core.engine.Policy` objects.

Every strategy runs through the very same :class:`agent.core.engine.ExecutionEngine`,
pre-trade checks (:mod:`agent.core.risk`: participation cap, remaining quantity,
crossed/stale book) and fill simulator as the closed-loop MPC; only the
decision differs. Build them with :func:`policy_factory` and pass the result
as ``ExecutionEngine(policy_factory=...)``.

Schedules are *cumulative targets with catch-up*: a strategy fixes target
cumulative fills ``T_k`` (shares done by the end of period ``k``, ``T_{N-1} =
Q``) and the child order of period ``k`` is::

    x_k = clip(T_k - filled_k, 0, remaining_k)

so a short (partial) fill is retried in later periods. Targets are whole lots
(``b`` = the parent's ``lot_size``): the *cumulative* target is rounded,
``T'_k = b * rint(T_k / b)`` (capped at ``b * floor(Q / b)``; a target that
reaches ``Q`` stays ``Q``), so each period's rounding is carried into the next
one and the child orders are whole lots that add up to ``Q`` exactly (the
counts are integers; a parent that is not a whole number of lots finishes with
its odd tail). Fills are whole lots too, so ``x_k`` is. Targets:

- ``twap``: ``T_k = Q (k + 1) / N``.
- ``vwap``: ``T_k = Q sum_{j<=k} w_j / sum_j w_j`` with ``w_j`` the market
  volume expected in period ``j`` from a :class:`VolumeCurve` (time-of-day
  profile of traded volume). Learned from the replayed day itself it is
  look-ahead (the runner says so in the report); with several days the runner
  learns it from the other days.
- ``pov``: a fixed fraction ``rho`` of the *trailing* traded volume,
  ``T_k = rho (V_0 + sum traded since the first decision)``, with
  ``rho = min(max_participation, Q / sum_j Vhat_j)`` fixed at the first
  decision that has a volume forecast ``Vhat`` (the :class:`VolumeCurve` over
  the window when given, the same as VWAP's; else the engine's forecast, and
  nothing is traded before it sees volume; ``V_0 = Vhat_0`` stands in for the
  unobserved first period), and ``T_{N-1} = Q`` (sweep at the deadline, like
  every other strategy, so the comparison is on completed orders).
- ``ac``: static Almgren-Chriss, closed form of ``min sum gamma x_k^2 + lambda
  sigma^2 sum r_k^2`` with inventory ``r_j`` after ``j`` periods::

      r_j = Q sinh(kappa (N - j)) / sinh(kappa N),   cosh(kappa) = 1 + lambda sigma^2 / (2 gamma)

  using the same inputs as the MPC at the first decision (``gamma`` = mean of
  the forecast, ``sigma`` dollars per period, ``lambda`` = the parent's
  ``risk_aversion``). With ``lambda = 0`` it is TWAP.
- ``open-loop``: the MPC's QP solved once at the first decision (same
  ``beta, gamma, cap, sigma, lambda``), then followed as cumulative targets.
- ``mpc``: :class:`agent.core.engine.MPCPolicy`, re-solved every period.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.core.model import NS_PER_S, FloatArray, ParentOrder, Plan, SolverInfo
from agent.core.mpc.qp import RecedingHorizonQP
from agent.core.policy import DecisionInput, EngineSettings, Policy, PolicyFactory, mpc_policy

STRATEGIES: tuple[str, ...] = ("mpc", "twap", "vwap", "pov", "ac", "open-loop")
DAY_S = 86_400
VOLUME_BUCKET_S = 1800.0
"""Default bucket of the VWAP volume curve: half-hours, like ``IntradayProfile``'s
default. Per-minute volume of one day is mostly noise (single prints), and a
VWAP schedule that follows it concentrates orders into random minutes."""


@dataclass(frozen=True)
class VolumeCurve:
    """Average traded volume by time of day (UTC), in buckets of ``bucket_s`` seconds.

    ``volume[b]`` is the mean over ``days`` of the shares traded in
    ``[b * bucket_s, (b + 1) * bucket_s)`` seconds after UTC midnight.
    ``look_ahead`` is True when it was learned from the day being replayed.
    """

    bucket_s: float
    volume: FloatArray
    days: int
    look_ahead: bool

    @classmethod
    def from_trades(cls, ts_ns: np.ndarray, size: np.ndarray, *, days: int = 1,
                    bucket_s: float = VOLUME_BUCKET_S, look_ahead: bool = False) -> VolumeCurve:
        """Bucket trade sizes by UTC time of day and divide by ``days``."""
        n_b = int(np.ceil(DAY_S / bucket_s))
        tod = (np.asarray(ts_ns, np.int64) % (DAY_S * NS_PER_S)) / NS_PER_S
        b = np.minimum((tod // bucket_s).astype(np.int64), n_b - 1)
        vol = np.bincount(b, weights=np.asarray(size, np.float64), minlength=n_b)
        return cls(bucket_s, vol / max(days, 1), days, look_ahead)

    def window_volumes(self, start_ns: int, period_ns: int, n: int) -> FloatArray:
        """Expected market volume in each of ``n`` periods from ``start_ns``.

        ``w_k = C(t_{k+1}) - C(t_k)`` with ``C`` the cumulative curve over the
        time of day, linear inside a bucket (periods need not align with buckets).
        """
        edges_ns = start_ns + period_ns * np.arange(n + 1, dtype=np.int64)
        day0 = (start_ns // (DAY_S * NS_PER_S)) * DAY_S * NS_PER_S
        t = (edges_ns - day0) / NS_PER_S  # seconds after the start day's midnight
        cum = np.concatenate([[0.0], np.cumsum(self.volume)])
        grid = self.bucket_s * np.arange(len(cum))
        day_total = cum[-1]
        whole, frac = np.divmod(t, DAY_S)
        c = whole * day_total + np.interp(frac, grid, cum)
        return np.maximum(np.diff(c), 0.0)


def whole_lots(targets: npt.ArrayLike, quantity: float, lot: float) -> FloatArray:
    """Cumulative targets rounded to whole lots with the rounding carried forward.

    ``T'_k = b * n_k`` with the integer ``n_k = min(rint(T_k / b), floor(Q / b))``
    made non-decreasing, and ``T'_k = Q`` where ``T_k >= Q``. Rounding the
    cumulative target (not each period's increment) is what carries the
    residual: the increments ``T'_k - T'_{k-1}`` are whole lots and telescope
    to ``Q`` exactly.

    Parameters
    ----------
    targets : cumulative shares ``T_k`` (any shape; NaN is not allowed).
    quantity : the parent quantity ``Q``.
    lot : the lot size ``b > 0``.
    """
    t = np.clip(np.asarray(targets, np.float64), 0.0, quantity)
    most = int(np.floor(quantity / lot + 1e-9))
    n = np.minimum(np.rint(t / lot).astype(np.int64), most)
    if n.ndim:
        n = np.maximum.accumulate(n)
    return np.where(t >= quantity, quantity, lot * n.astype(np.float64))


def _plan(name: str, schedule: FloatArray, d: DecisionInput, solve_us: float = 0.0,
          status: str = "schedule") -> Plan:
    s = schedule[: d.periods_left]
    m = min(len(s), len(d.beta))
    cost = float(d.beta[:m] @ s[:m] + d.gamma[:m] @ (s[:m] ** 2))
    return Plan(s, cost, 0.0, SolverInfo(name, status, 0, solve_us))


class TargetSchedule:
    """Follows cumulative targets ``T_k`` with catch-up (module docstring).

    Subclasses implement :meth:`build_targets`, called once at the first decision.
    """

    name = "schedule"

    def __init__(self, parent: ParentOrder, settings: EngineSettings) -> None:
        self.parent = parent
        self.settings = settings
        self.targets: FloatArray | None = None

    def build_targets(self, d: DecisionInput) -> FloatArray:  # pragma: no cover - abstract
        raise NotImplementedError

    def target(self, d: DecisionInput) -> float:
        """Cumulative target for the current period (overridable, e.g. POV)."""
        assert self.targets is not None
        return float(self.targets[min(d.period_index, len(self.targets) - 1)])

    def decide(self, d: DecisionInput) -> Plan:
        t0 = time.perf_counter()
        if self.targets is None:
            p = self.parent
            self.targets = whole_lots(self.build_targets(d), p.quantity, p.lot_size)
        k = d.period_index
        now = float(np.clip(self.target(d) - d.filled, 0.0, d.remaining))
        future = np.diff(self.targets[k:]) if k < len(self.targets) else np.zeros(0)
        schedule = np.concatenate([[now], np.maximum(future, 0.0)])
        return _plan(self.name, schedule, d, (time.perf_counter() - t0) * 1e6)


class TWAPPolicy(TargetSchedule):
    """Equal shares per period: ``T_k = Q (k + 1) / N``."""

    name = "twap"

    def build_targets(self, d: DecisionInput) -> FloatArray:
        n = self.parent.n_periods
        return self.parent.quantity * np.arange(1, n + 1) / n


class VWAPPolicy(TargetSchedule):
    """Shares in proportion to the expected market volume of each period."""

    name = "vwap"

    def __init__(self, parent: ParentOrder, settings: EngineSettings, curve: VolumeCurve) -> None:
        super().__init__(parent, settings)
        self.curve = curve

    def build_targets(self, d: DecisionInput) -> FloatArray:
        p = self.parent
        w = self.curve.window_volumes(p.start_ns, p.period_ns, p.n_periods)
        if not w.sum() > 0:  # no volume history at all: nothing better than TWAP
            w = np.ones(p.n_periods)
        frac = np.cumsum(w) / w.sum()
        frac[-1] = 1.0  # the last cumulative share is 1 exactly, not 1 - ulp
        return p.quantity * frac


class POVPolicy(TargetSchedule):
    """A fixed fraction of the trailing traded volume, swept at the deadline."""

    name = "pov"

    def __init__(self, parent: ParentOrder, settings: EngineSettings,
                 curve: VolumeCurve | None = None) -> None:
        super().__init__(parent, settings)
        self.curve = curve
        self.rate = 0.0
        self.volume = 0.0
        self.first_period: int | None = None

    def build_targets(self, d: DecisionInput) -> FloatArray:
        self._set_rate(d)
        nominal = np.minimum(self.rate * np.cumsum(d.volume_forecast), self.parent.quantity)
        return np.concatenate([np.zeros(d.period_index), nominal])  # for display only

    def _set_rate(self, d: DecisionInput) -> None:
        p = self.parent
        vf = np.asarray(d.volume_forecast, np.float64)
        if self.curve is not None:  # the expected window volume from the volume curve, if any
            w = self.curve.window_volumes(p.start_ns, p.period_ns, p.n_periods)[d.period_index:]
            if w.sum() > 0:
                vf = w
        expected = float(vf.sum())
        if not expected > 0:  # cold start (no trade seen yet): wait for a volume estimate
            return
        cap = p.max_participation if p.max_participation is not None else self.settings.max_participation
        self.rate = min(cap, p.quantity / expected)
        self.volume = float(vf[0])
        self.first_period = d.period_index

    def target(self, d: DecisionInput) -> float:
        if d.periods_left <= 1:
            return self.parent.quantity
        if self.first_period is None:
            self._set_rate(d)
        elif d.period_index != self.first_period:
            self.volume += d.traded_since_last_decision
        p = self.parent
        return float(whole_lots(self.rate * self.volume, p.quantity, p.lot_size))


class AlmgrenChrissPolicy(TargetSchedule):
    """Static Almgren-Chriss trajectory (closed form, module docstring)."""

    name = "ac"

    def build_targets(self, d: DecisionInput) -> FloatArray:
        p = self.parent
        n = p.n_periods
        r = ac_inventory(p.quantity, n, float(np.mean(d.gamma)), d.sigma, p.risk_aversion)
        return p.quantity - r[1:]


def ac_inventory(quantity: float, n: int, gamma: float, sigma: float, risk_aversion: float) -> FloatArray:
    """Almgren-Chriss inventory ``r_j, j = 0..n`` (``r_0 = Q``, ``r_n = 0``).

    ``r_j = Q sinh(kappa (n - j)) / sinh(kappa n)`` with ``cosh(kappa) = 1 +
    lambda sigma^2 / (2 gamma)``, the exact solution of the discrete problem
    ``min sum_j gamma (r_{j-1} - r_j)^2 + lambda sigma^2 r_j^2``. Evaluated as
    ``exp(-kappa j) (1 - exp(-2 kappa (n - j))) / (1 - exp(-2 kappa n))`` so that
    a large ``kappa n`` does not overflow. ``kappa = 0`` is the straight line.
    """
    j = np.arange(n + 1, dtype=np.float64)
    a = risk_aversion * sigma**2 / (2.0 * gamma) if gamma > 0 else 0.0
    if not (np.isfinite(a) and a > 0):
        return quantity * (1.0 - j / n)
    kappa = float(np.arccosh(1.0 + a))
    if kappa * n < 1e-8:
        return quantity * (1.0 - j / n)
    r = np.exp(-kappa * j) * -np.expm1(-2.0 * kappa * (n - j)) / -np.expm1(-2.0 * kappa * n)
    return quantity * r


class OpenLoopPolicy(TargetSchedule):
    """The MPC's QP solved once at the first decision, then followed (no re-planning)."""

    name = "open-loop"

    def __init__(self, parent: ParentOrder, settings: EngineSettings) -> None:
        super().__init__(parent, settings)
        self.first: Plan | None = None

    def build_targets(self, d: DecisionInput) -> FloatArray:
        qp = RecedingHorizonQP(self.parent.n_periods, settings=self.settings.solver)
        plan = qp.solve(d.remaining, d.beta, d.gamma, np.minimum(d.cap, d.max_child),
                        risk_aversion=self.parent.risk_aversion, sigma=d.sigma)
        self.first = plan
        done_before = np.full(d.period_index, d.filled)
        planned = d.filled + np.cumsum(plan.schedule)
        if len(planned):  # the plan completes ``remaining - shortfall`` exactly, not to solver tolerance
            planned[-1] = d.filled + max(d.remaining - plan.shortfall, 0.0)
        return np.concatenate([done_before, planned])

    def decide(self, d: DecisionInput) -> Plan:
        fresh = self.targets is None
        plan = super().decide(d)
        if fresh and self.first is not None:  # report the real solve of the first decision
            return Plan(plan.schedule, self.first.objective, self.first.shortfall,
                        self.first.solver, self.first.fallback)
        return plan


def policy_factory(name: str, *, volume_curve: VolumeCurve | None = None) -> PolicyFactory:
    """The engine's policy factory for strategy ``name`` (one of :data:`STRATEGIES`).

    ``vwap`` needs ``volume_curve``; ``pov`` uses it for its rate when given.
    """
    if name == "mpc":
        return mpc_policy
    simple: dict[str, Callable[[ParentOrder, EngineSettings], Policy]] = {
        "twap": TWAPPolicy, "ac": AlmgrenChrissPolicy, "open-loop": OpenLoopPolicy,
    }
    if name in simple:
        return simple[name]
    if name == "pov":
        pov_curve = volume_curve

        def make_pov(parent: ParentOrder, settings: EngineSettings) -> Policy:
            return POVPolicy(parent, settings, pov_curve)

        return make_pov
    if name == "vwap":
        if volume_curve is None:
            raise ValueError("the vwap strategy needs a volume curve (VolumeCurve.from_trades)")
        curve = volume_curve

        def make(parent: ParentOrder, settings: EngineSettings) -> Policy:
            return VWAPPolicy(parent, settings, curve)

        return make
    raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
