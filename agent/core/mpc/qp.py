"""The receding-horizon execution QP: built once per parent order, re-solved every period.

Per period, with R shares remaining over P periods (DESIGN.md section 4)::

    minimise   sum_k beta_k x_k + gamma_k x_k^2 + L sigma^2 sum_k r_k^2
    subject to r_k = r_{k-1} - x_k,  r_{-1} = R,   r_{S-1} = s,   0 <= x_k <= u_k

in (x, r) so the Hessian is diagonal for one-period slots (blocked slots add
one (x_k, r_k) entry, see ``agent.core.mpc.blocking``). Variables are scaled to units of
``R / P_eff`` shares (``P_eff``: periods the previous plan still trades in, P at
first) and the objective by ``c = unit mean(beta) + unit^2 mean(gamma) +
L sigma^2 R^2 / 3``, so the data OSQP sees are O(1) whatever the order size.

Terminal slack. ``s`` is the shortfall: what the caps make impossible to trade
by the deadline. The problem is always feasible because ``s`` is fixed to
``max(0, R - sum_k u_k)``; this is the infinite-penalty limit of a penalised
slack (minimising the shortfall is lexicographically first) and it is computed
exactly instead of through a large linear cost, which would inflate OSQP's
relative dual tolerance ``eps_rel * ||q||`` by the size of the penalty.

Structure is fixed at construction (``S`` slots, risk entries always present),
so every period is ``update(q, l, u, Px)`` + warm start + ``solve``. The warm
start shifts the previous plan one period in *period* space (so it survives a
change of blocking) and the duals likewise, converted through the scalings.

Accuracy. OSQP runs at eps 1e-3 with polishing; when polishing fails (a wrong
active-set guess, ~20% of random risk instances) an exact primal-dual
active-set step (``agent.core.mpc.oracle.active_set_qp``) started from OSQP's solution
finishes it, so plans match a 1e-9 Clarabel reference to ~1e-9 relative.

Failure handling never raises: OSQP not solved -> exact KKT solution when the
problem is separable (``agent.core.mpc.oracle``), else the previous plan shifted, else an
even split under the caps. Each fallback is counted in ``fallbacks[reason]``.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import osqp
import scipy.sparse as sp

from agent.core.model import FloatArray, Plan, SolverInfo
from agent.core.mpc.blocking import Aggregated, Layout, aggregate, collapse, expand, make_layout
from agent.core.mpc.oracle import (
    active_set_qp,
    fallback_schedule,
    model_cost,
    repair_sum,
    slot_qp,
)

__all__ = ["RecedingHorizonQP", "SolverSettings"]

_OK = {"solved", "solved inaccurate"}
log = logging.getLogger("agent.core.mpc.qp")


@dataclass(frozen=True)
class SolverSettings:
    """OSQP settings and horizon shape (DESIGN.md section 4, measured defaults).

    ``fine_slots`` one-period slots come first; when more periods remain than
    ``fine_slots + coarse_slots`` the rest are split evenly into ``coarse_slots``
    blocks (``agent.core.mpc.blocking``). ``time_limit_s`` must stay below the period.
    ``polish_refine_iter`` is raised from OSQP's 3 to 10: measured, polishing
    then succeeds on every period of an unblocked N = 1000 order (it failed on
    all of them at 3, leaving the dense active-set finish to do the work).
    ``terminal_penalty`` is kept for configuration compatibility: the
    shortfall is computed exactly (infinite-penalty limit, module docstring),
    so it does not enter the QP.
    """

    eps_abs: float = 1e-3
    eps_rel: float = 1e-3
    polish: bool = True
    adaptive_rho: bool = True
    max_iter: int = 4000
    polish_refine_iter: int = 10
    time_limit_s: float = 0.05
    fine_slots: int = 30
    coarse_slots: int = 20
    terminal_penalty: float = 1e4

    def osqp_kwargs(self) -> dict[str, Any]:
        return dict(eps_abs=self.eps_abs, eps_rel=self.eps_rel, polishing=self.polish,
                    adaptive_rho=self.adaptive_rho, max_iter=self.max_iter,
                    polish_refine_iter=self.polish_refine_iter,
                    time_limit=self.time_limit_s, verbose=False, warm_starting=True)


@dataclass
class _Previous:
    schedule: FloatArray  # per period
    layout: Layout | None = None
    y_dollars: FloatArray | None = None  # duals in dollars per share


_AND, _MIN = np.logical_and.reduce, np.minimum.reduce


class RecedingHorizonQP:
    """One parent order's QP: set up once (``setup_calls`` == 1), updated every period.

    Parameters
    ----------
    n_periods : periods of the parent order; the QP has
        ``S = min(n_periods, fine_slots + coarse_slots)`` slots.
    settings : solver settings.

    Attributes
    ----------
    setup_calls : OSQP setups done by this instance (1 per parent order).
    fallbacks : count of fallback plans by reason.
    """

    def __init__(self, n_periods: int, *, settings: SolverSettings = SolverSettings()) -> None:
        if n_periods < 1:
            raise ValueError("n_periods must be >= 1")
        self.settings = settings
        self.n_periods = n_periods
        self.n_slots = max(1, min(n_periods, settings.fine_slots + settings.coarse_slots))
        self.fallbacks: collections.Counter[str] = collections.Counter()
        self.setup_calls = 0
        self.polish_failures = 0
        self.refinements = 0
        self._prev: _Previous | None = None
        self._build()

    # ------------------------------------------------------------ structure
    def _build(self) -> None:
        s = self.n_slots
        ks = np.arange(s)
        # A: rows 0..S-1 dynamics x_k + r_k - r_{k-1}; rows S..2S-1 x_k; row 2S r_{S-1}
        rows = np.concatenate((ks, s + ks, ks, ks[1:], [2 * s]))
        cols = np.concatenate((ks, ks, s + ks, s + ks[:-1], [2 * s - 1]))
        vals = np.concatenate((np.ones(3 * s), -np.ones(s - 1), [1.0]))
        a = sp.csc_matrix((vals, (rows, cols)), shape=(2 * s + 1, 2 * s))
        # P (upper): columns x_k: diag; columns r_k: (x_k, r_k) then (r_k, r_k)
        indptr = np.concatenate((np.arange(s + 1), s + 2 * np.arange(1, s + 1)))
        indices = np.concatenate((ks, np.column_stack((ks, s + ks)).ravel()))
        data = self._px(np.full(s, 2.0), np.full(s, 0.1), np.ones(s))
        p = sp.csc_matrix((data, indices, indptr), shape=(2 * s, 2 * s))
        inf = np.full(2 * s + 1, np.inf)
        self._solver = _Osqp(p, a, inf, self.settings.osqp_kwargs())
        self.setup_calls += 1
        # per-solve buffers (OSQP copies what it is given): no allocation on the hot path
        self._q = np.zeros(2 * s)
        self._lo = np.zeros(2 * s + 1)
        self._hi = np.zeros(2 * s + 1)
        self._pxbuf = np.empty(3 * s)

    @staticmethod
    def _px(pxx: FloatArray, pxr: FloatArray, prr: FloatArray) -> FloatArray:
        return np.concatenate((pxx, np.column_stack((pxr, prr)).ravel()))

    # ------------------------------------------------------------ solve
    def solve(self, remaining: float, beta: npt.ArrayLike, gamma: npt.ArrayLike,
              cap: npt.ArrayLike, *, risk_aversion: float = 0.0, sigma: float = 0.0,
              first_slot_limit: float | None = None) -> Plan:
        """Plan ``remaining`` shares over ``P = len(beta)`` remaining periods.

        Parameters
        ----------
        remaining : R, shares left (fills, not plans).
        beta, gamma, cap : per remaining period; ``cap`` may hold ``np.inf``.
        risk_aversion, sigma : risk term ``L sigma^2 sum_k r_k^2`` (sigma in $/period).
        first_slot_limit : extra upper bound on period 0 (e.g. a risk limit).

        Returns
        -------
        Plan : per-period schedule (length P), model objective in dollars,
            shortfall, solver info; ``fallback`` names the reason when OSQP
            did not deliver. Never raises on bad data or solver failure.
        """
        t0 = time.perf_counter()
        b = np.asarray(beta, dtype=np.float64).reshape(-1)
        g = np.asarray(gamma, dtype=np.float64).reshape(-1)
        u = np.asarray(cap, dtype=np.float64).reshape(-1)
        n = b.size
        if g.size != n or u.size != n:
            raise ValueError("beta, gamma and cap must have one entry per remaining period")
        r_tot = float(remaining)
        u = u.copy()
        if first_slot_limit is not None and n:
            u[0] = min(u[0], max(float(first_slot_limit), 0.0))
        w = float(risk_aversion) * float(sigma) ** 2 if risk_aversion != 0 else 0.0
        if n == 0 or (math.isfinite(r_tot) and r_tot <= 0):
            self._prev = _Previous(np.zeros(n))
            return Plan(np.zeros(n), 0.0, 0.0, SolverInfo("trivial", "nothing to do", 0, _us(t0)))
        # ufunc reductions, not ndarray.all()/any() (their Python wrappers were a tenth of a decision);
        # min() propagates NaN, so min(g) > 0 and min(u) >= 0 also refuse NaN
        valid = (math.isfinite(r_tot) and math.isfinite(w) and w >= 0
                 and bool(_AND(np.isfinite(b)) and _AND(np.isfinite(g)) and _MIN(g) > 0 and _MIN(u) >= 0))
        if not valid:
            return self._fallback("invalid_input", r_tot, b, g, u, w, t0, exact_ok=False)
        shortfall = max(0.0, r_tot - float(np.add.reduce(u)))  # np.sum's own reduction
        if shortfall > 0.0:  # the caps bind in every period: the one feasible plan is every cap
            return self._at_caps(u, b, g, r_tot, shortfall, w, t0)
        layout = make_layout(n, self.n_slots, self.settings.fine_slots)
        agg = aggregate(layout, b, g, u)
        unit = r_tot / self._effective_periods(n)
        c = unit * float(b.mean()) + unit * unit * float(g.mean()) + w * r_tot * r_tot / 3.0
        self._update(agg, r_tot, shortfall, unit, c, w)
        self._warm_start(layout, r_tot, shortfall, unit, c, n)
        status, polished, iters, x_all, y_all = self._solver.solve()
        x_s = x_all[: self.n_slots] if x_all is not None else None
        if status not in _OK or x_s is None or not np.all(np.isfinite(x_s)):
            reason = status.replace(" ", "_") if status not in _OK else "non_finite_solution"
            return self._fallback(reason, r_tot, b, g, u, w, t0, exact_ok=True,
                                  iterations=iters)
        if polished != 1:
            self.polish_failures += 1
            exact = self._refine(agg, x_s, r_tot, shortfall, unit, c, w)
            if exact is not None:
                self.refinements += 1
                x_s = exact
        x_slots = repair_sum(np.minimum(np.maximum(x_s * unit, 0.0), agg.cap), agg.cap, r_tot - shortfall)
        sched = expand(layout, x_slots, agg.weights)
        y = np.asarray(y_all, dtype=np.float64) * (c / unit)
        self._prev = _Previous(sched, layout, y)
        obj = model_cost(sched, b, g, remaining=r_tot, risk_aversion=w, sigma=1.0)
        info = SolverInfo("osqp", status, iters, _us(t0))
        return Plan(sched, obj, shortfall, info, None)

    def _at_caps(self, u: FloatArray, b: FloatArray, g: FloatArray, r_tot: float, shortfall: float,
                 w: float, t0: float) -> Plan:
        """The plan when ``sum(cap) < R``: ``x_k = cap_k`` is the only feasible schedule (no solve).

        OSQP would be asked for a feasible set of one point; it often reports it
        primal infeasible within its tolerance, which is not a solver failure.
        """
        sched = u.copy()
        self._prev = _Previous(sched)
        obj = model_cost(sched, b, g, remaining=r_tot, risk_aversion=w, sigma=1.0)
        return Plan(sched, obj, shortfall, SolverInfo("closed_form", "caps_bind", 0, _us(t0)))

    def _effective_periods(self, n: int) -> int:
        """Periods the previous plan still trades in (scale of the variables), else n."""
        prev = self._prev
        if prev is None or prev.schedule.size < n or n == 0:
            return max(n, 1)
        base = prev.schedule[prev.schedule.size - n:]
        top = float(base.max()) if base.size else 0.0
        return max(int(np.count_nonzero(base > 1e-3 * top)), 1) if top > 0 else max(n, 1)

    def _update(self, agg: Aggregated, r_tot: float, shortfall: float, unit: float, c: float,
                w: float) -> None:
        s = self.n_slots
        k2 = unit * unit / c
        q, lo, hi, px = self._q, self._lo, self._hi, self._pxbuf
        np.multiply(agg.beta, unit / c, out=q[:s])
        px[:s] = 2.0 * k2 * (agg.gamma + w * agg.risk_aa)
        px[s::2] = 2.0 * k2 * w * agg.risk_a  # the layout of _px: (x_k, r_k) then (r_k, r_k)
        px[s + 1::2] = 2.0 * k2 * w * agg.risk_m
        lo[0] = r_tot / unit
        lo[2 * s] = shortfall / unit
        hi[:] = lo
        np.minimum(agg.cap / unit, 1e30, out=hi[s: 2 * s])
        self._solver.update(q, lo, hi, px)

    def _warm_start(self, layout: Layout, r_tot: float, shortfall: float, unit: float, c: float,
                    n: int) -> None:
        prev = self._prev
        s = self.n_slots
        base: FloatArray | None = None
        if prev is not None and 0 < n <= prev.schedule.size:
            base = prev.schedule[prev.schedule.size - n:]
        if base is None or not base.sum() > 0:
            base = np.full(n, (r_tot - shortfall) / n)
        else:
            base = base * ((r_tot - shortfall) / base.sum())
        x = collapse(layout, base) / unit
        r = r_tot / unit - np.cumsum(x)
        y = np.zeros(2 * s + 1)
        if prev is not None and prev.layout is not None and prev.y_dollars is not None:
            shift = prev.layout.n_periods - n
            act = layout.n_active
            ends = layout.starts[:act] + layout.sizes[:act] - 1 + shift
            old = prev.layout.slot_of_period(ends)
            yd = prev.y_dollars * (unit / c)
            y[:act] = yd[old]
            y[s: s + act] = yd[s + old]
            y[act:s] = yd[s - 1]  # past the deadline r is constant: same multiplier
            y[2 * s] = yd[2 * s]
        self._solver.warm_start(np.concatenate((x, r)), y)

    def _refine(self, agg: Aggregated, x_s: FloatArray, r_tot: float, shortfall: float,
                unit: float, c: float, w: float) -> FloatArray | None:
        """Exact active-set finish (``agent.core.mpc.oracle.slot_qp``) of an unpolished OSQP solution."""
        act = int(np.count_nonzero(agg.risk_m))
        if act == 0:
            return None
        k2 = unit * unit / c
        h, lin = slot_qp(agg.beta[:act] * (unit / c), agg.gamma[:act] * k2, w * k2, r_tot / unit,
                         agg.risk_m[:act], agg.risk_a[:act], agg.risk_aa[:act])
        x = active_set_qp(h, lin, agg.cap[:act] / unit, (r_tot - shortfall) / unit, x_s[:act])
        if x is None:
            return None
        out = np.zeros(self.n_slots)
        out[:act] = x
        return out

    # ------------------------------------------------------------ fallbacks
    def _fallback(self, reason: str, r_tot: float, b: FloatArray, g: FloatArray, u: FloatArray,
                  w: float, t0: float, *, exact_ok: bool, iterations: int = 0) -> Plan:
        self.fallbacks[reason] += 1
        log.warning("QP fallback (%s) with %d periods left; total fallbacks %s", reason, b.size,
                    dict(self.fallbacks))
        prev = self._prev.schedule if self._prev is not None else None
        r_eff = r_tot if math.isfinite(r_tot) else 0.0
        sched, shortfall, name = fallback_schedule(r_eff, b, g, u, prev,
                                                   exact_ok=exact_ok and w == 0.0)
        self._prev = _Previous(sched)
        ok = bool(np.all(np.isfinite(b)) and np.all(np.isfinite(g)))
        obj = model_cost(sched, b, g, remaining=r_eff, risk_aversion=w, sigma=1.0) if ok else math.nan
        return Plan(sched, obj, shortfall, SolverInfo(name, reason, iterations, _us(t0)), reason)


class _Osqp:
    """The OSQP solver of one parent order: set up once, then update / warm start / solve.

    Calls the compiled solver object directly when the ``osqp`` package exposes
    it (osqp >= 1.0: ``OSQP._solver``), which skips ~100 us of per-call Python
    bookkeeping in the wrapper (result namespaces, constant look-ups); otherwise
    the public API. Both paths run the same C solver.
    """

    def __init__(self, p: sp.csc_matrix, a: sp.csc_matrix, inf: FloatArray,
                 settings: dict[str, Any], *, direct: bool = True) -> None:
        self.py = osqp.OSQP(algebra=_algebra())
        self.py.setup(p, np.zeros(p.shape[0]), a, -inf, inf, **settings)
        ext = getattr(self.py, "_solver", None)
        needed = ("update_data_vec", "update_data_mat", "warm_start", "solve", "info", "solution")
        self.ext = ext if direct and ext is not None and all(hasattr(ext, m) for m in needed) else None

    def update(self, q: FloatArray, lo: FloatArray, hi: FloatArray, px: FloatArray) -> None:
        if self.ext is not None:
            self.ext.update_data_vec(q=q, l=lo, u=hi)
            self.ext.update_data_mat(P_x=px, P_i=None, A_x=None, A_i=None)
        else:
            self.py.update(q=q, l=lo, u=hi, Px=px)

    def warm_start(self, x: FloatArray, y: FloatArray) -> None:
        (self.ext or self.py).warm_start(x=x, y=y)

    def solve(self) -> tuple[str, int, int, FloatArray | None, FloatArray | None]:
        """(status, polish status, iterations, x, y) of one solve; never raises."""
        if self.ext is not None:
            self.ext.solve()
            info, sol = self.ext.info, self.ext.solution
            x, y = sol.x, sol.y
        else:
            res = self.py.solve(raise_error=False)
            info, x, y = res.info, res.x, res.y
        x = None if x is None else np.array(x, dtype=np.float64)
        y = None if y is None else np.array(y, dtype=np.float64)
        return str(info.status), int(info.status_polish), int(info.iter), x, y


@functools.cache
def _algebra() -> str:
    """OSQP's default linear-algebra backend, found once: ``osqp.OSQP()`` looks it up on every
    construction by trying to import each backend (~0.2-1.5 ms: 1,000 parents took seconds)."""
    return str(osqp.default_algebra())


def _us(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e6
