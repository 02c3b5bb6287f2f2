r"""The planner's forecast per slot: the book now for slot 0, reverting to the level after.

For a parent with period ``P`` deciding at ``t`` (slot ``k`` starts at
``t_k = t + k P``) and a fitting grid of sizes ``x_1..x_g`` (a few times its
even slice), with ``f_q(t)`` the intraday profile factor of quantity ``q``
(1 when flat), ``L_q`` its deseasonalised long-run level and ``rho_q(s)`` the
persistence of its relative deviation over ``s`` seconds
(:class:`agent.core.forecast.reversion.ReversionEstimator`)::

    slot 0:   beta_0, gamma_0 = quadratic fit of the decision snapshot's own cost curve
              (what the child order will meet, apart from latency)
    k >= 1:   q_k = L_q f_q(t_k) (1 + rho_q(k P) d_q),   d_q = clip(q_0 / (L_q f_q(t)) - 1, -1, c)

which is the issue's ``level_k + (now - level_k) rho^k`` with the deviation
measured relative to the level *at the current time of day* (so a seasonal
difference between now and slot ``k`` is not mistaken for a deviation) and
``rho = rho_q(P)`` per period. Volume (the participation caps), with ``v`` the
rate over the last lag window ``[g - l, g)`` (``g`` the last sampled grid time)::

    V_k = P L_v f_v(t_k) (1 + rho_v(s_k) d_v),   d_v = clip(v / (L_v f_v(g)) - 1, -1, c),
    s_k = (t - g) + l / 2 + (k + 1/2) P   (window centre to slot centre)

Before its level has data a quantity is carried flat at its current value
times the profile shape (persistence one: no reversion bet without data);
the volume forecast is then ``None`` (the caller keeps its own estimate).

**Sampling.** The symbol's :class:`agent.core.forecast.sampler.BookSampler`
samples the book (the last usable row at or before each grid time ``j *
sample_s``) and the lag-window volume once per symbol; each parent's
:class:`ParentForecaster` walks the sampled rows over its own grid and fits
them when it decides, so the per-row engine cost does not grow with parents.

**Convexity floor and trust region (kept, and why they still hold).** The
forecast makes slots differ in ``beta``, so the QP is closer to a linear
programme than before: with ``gamma`` near zero (grid inside the top level, a
common case) the optimum would jump to the cheapest slot and be non-unique
when two are equal. :func:`floor_gamma` keeps ``gamma_k >= c_min beta_k /
xbar`` (``xbar = R / P_left``): a unique optimum, an even split when the
forecasts are flat, and the KKT rule ``x_k = (lambda - beta_k) / (2 gamma_k)``
moves volume towards a cheaper slot in proportion to how much cheaper it is.
That proportion is steep (at ``c_min = 0.01`` a slot 1% cheaper takes half an
even slice more), so in practice a clearly cheaper book now trades up to the
trust region ``max_child_multiple * xbar`` -- the range the quadratic was
fitted on (``size_grid_multiple`` times the parent's initial even slice; the
same while ``R / P_left`` stays near ``Q / N``), beyond which its price is
extrapolation -- or up to the participation cap, whichever binds first. What
the model leaves out is our own footprint: a large child depletes the book the
next slots meet (the replay simulator's depletion recovers with a 30 s
half-life), which the trust region also limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.core.errors import DataError
from agent.core.forecast.profile import IntradayProfile
from agent.core.forecast.reversion import ReversionEstimator, ReversionSettings
from agent.core.forecast.sampler import BookSampler, book_rows
from agent.core.impact.curves import walk_cost, walk_cost_levels
from agent.core.impact.fit import GAMMA_FLOOR
from agent.core.model import NS_PER_S, BookLike, FloatArray, ImpactParams, Side

__all__ = ["FitGrid", "ParentForecaster", "SlotForecast", "fit_rows", "floor_gamma"]

KINDS = ("beta", "gamma")


def fit_rows(sizes: FloatArray, cost: FloatArray) -> tuple[FloatArray, FloatArray]:
    r"""Constrained least-squares ``beta x + gamma x^2`` of every row of ``cost`` (n, g), vectorised.

    Same problem and answer as :func:`agent.core.impact.fit.fit_quadratic`
    (``beta >= 0``, ``gamma >= GAMMA_FLOOR``, equal weights) for many curves at
    once: with :math:`S_p = \sum_j x_j^p` (shared) and per row
    :math:`a = \sum x c`, :math:`b = \sum x^2 c`, the candidates are the
    normal-equation solution (when feasible, the optimum)

    .. math:: \beta = (a S_4 - b S_3) / \Delta,\quad \gamma = (S_2 b - S_3 a) / \Delta,
              \quad \Delta = S_2 S_4 - S_3^2

    and the two edges :math:`(0, \max(\gamma_f, b / S_4))` and
    :math:`(\max(0, (a - \gamma_f S_3) / S_2), \gamma_f)`; the feasible one with the
    smallest squared error wins. A row with a non-finite point gives NaN.
    """
    return FitGrid(sizes).fit(cost)


class FitGrid:
    """The sums of one fitting grid, computed once (a parent's grid is fixed), and :meth:`fit`."""

    __slots__ = ("det", "s2", "s3", "s4", "scalar_ok", "xx")

    def __init__(self, sizes: FloatArray) -> None:
        x = np.asarray(sizes, dtype=np.float64)
        x2 = x * x
        self.xx = np.stack([x, x2], axis=1)
        self.s2, self.s3, self.s4 = float(x2.sum()), float(x2 @ x), float(x2 @ x2)
        self.det = self.s2 * self.s4 - self.s3 * self.s3
        # the scalar path needs no division by zero: a well-posed grid (finite rows are checked per call)
        self.scalar_ok = self.s2 > 0 and self.s4 > 0 and self.det > 1e-12 * self.s2 * self.s4

    def fit(self, cost: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``beta, gamma`` (n,) of the rows of ``cost`` (n, g) (:func:`fit_rows`)."""
        c = np.atleast_2d(np.asarray(cost, dtype=np.float64))
        ab = c @ self.xx
        if ab.shape[0] == 1 and self.scalar_ok:  # one row (a decision): scalar arithmetic, same bits
            a, b = float(ab[0, 0]), float(ab[0, 1])
            if math.isfinite(a) and math.isfinite(b):
                beta, gamma = self._fit_one(a, b)
                return np.array([beta]), np.array([gamma])
        return self._fit_many(ab[:, 0], ab[:, 1])

    def _fit_many(self, a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
        s2, s3, s4, det = self.s2, self.s3, self.s4, self.det
        b0, g0 = (a * s4 - b * s3) / det, (s2 * b - s3 * a) / det  # normal equations
        g1 = np.maximum(GAMMA_FLOOR, b / s4)  # beta = 0 edge
        b2 = np.maximum(0.0, (a - GAMMA_FLOOR * s3) / s2)  # gamma floor edge
        sse1 = -2.0 * g1 * b + g1 * g1 * s4  # squared errors up to the constant sum c^2
        sse2 = -2.0 * (b2 * a + GAMMA_FLOOR * b) + b2 * b2 * s2 + 2.0 * b2 * GAMMA_FLOOR * s3 + GAMMA_FLOOR ** 2 * s4
        edge1 = sse1 <= sse2
        interior = (b0 >= 0.0) & (g0 >= GAMMA_FLOOR) & (det > 1e-12 * s2 * s4)
        beta = np.where(interior, b0, np.where(edge1, 0.0, b2))
        gamma = np.where(interior, g0, np.where(edge1, g1, GAMMA_FLOOR))
        return np.asarray(beta, dtype=np.float64), np.asarray(gamma, dtype=np.float64)

    def _fit_one(self, a: float, b: float) -> tuple[float, float]:
        """:meth:`_fit_many` for one finite row on a well-posed grid, operation for operation."""
        s2, s3, s4, det = self.s2, self.s3, self.s4, self.det
        b0, g0 = (a * s4 - b * s3) / det, (s2 * b - s3 * a) / det
        if b0 >= 0.0 and g0 >= GAMMA_FLOOR:
            return b0, g0
        g1 = max(GAMMA_FLOOR, b / s4)
        b2 = max(0.0, (a - GAMMA_FLOOR * s3) / s2)
        sse1 = -2.0 * g1 * b + g1 * g1 * s4
        sse2 = -2.0 * (b2 * a + GAMMA_FLOOR * b) + b2 * b2 * s2 + 2.0 * b2 * GAMMA_FLOOR * s3 + GAMMA_FLOOR ** 2 * s4
        return (0.0, g1) if sse1 <= sse2 else (b2, GAMMA_FLOOR)


def floor_gamma(beta: FloatArray, gamma: FloatArray, *, remaining: float, periods_left: int,
                lot: float, min_convexity: float) -> FloatArray:
    """Convexity floor ``gamma_k >= min_convexity * beta_k / max(R / P_left, lot)`` (module docstring)."""
    xbar = max(remaining / max(periods_left, 1), lot)
    return np.asarray(np.maximum(gamma, min_convexity * np.asarray(beta) / xbar), dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class SlotForecast:
    """Per-slot forecasts of one decision and what they came from (for records and tests)."""

    beta: FloatArray
    gamma: FloatArray
    volume: FloatArray | None  # shares per period; None before the volume level has data
    now: ImpactParams  # the decision snapshot's own fit (slot 0)
    rho: dict[str, float]  # persistence per period P of each quantity
    deviation: dict[str, float]  # d_q of each quantity


class ParentForecaster:
    """``beta, gamma`` level and persistence on one parent's size grid, fed from its symbol's sampler.

    At each decision the rows the symbol's :class:`agent.core.forecast.sampler.BookSampler`
    stored since the last one (all it holds, for a new parent) are walked over
    the grid and fitted in ONE vectorised call together with the decision row
    (slot 0), and the fits feed the two :class:`ReversionEstimator` (divided
    by the profile factor of their time of day). The estimators therefore see
    the same samples in the same order however the book was chunked.

    Parameters
    ----------
    side : ``buy`` walks the asks, ``sell`` the bids.
    sizes : the fitting grid (shares), the parent's (``default_sizes``).
    settings : lag, half-lives, prior (``ReversionSettings``; the sampler's grid).
    profile : intraday profile (flat when None).
    penalty_ticks, tick : extrapolation beyond the visible depth, as in the cost curves.
    """

    VERSION = 1

    def __init__(self, side: Side, sizes: FloatArray, settings: ReversionSettings | None = None, *,
                 profile: IntradayProfile | None = None, penalty_ticks: float = 3.0,
                 tick: float = 0.01) -> None:
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        self.side: Side = side
        self.sizes = np.asarray(sizes, dtype=np.float64).copy()
        self._grid = FitGrid(self.sizes)
        self.settings = settings or ReversionSettings()
        self.profile = profile if profile is not None else IntradayProfile.flat()
        self.penalty_ticks, self.tick = float(penalty_ticks), float(tick)
        self._penalty = self.penalty_ticks * self.tick  # per share beyond the visible depth
        self._sizes = self.sizes.tolist()
        self.est = {k: ReversionEstimator(self.settings) for k in KINDS}
        self.consumed: int | None = None  # last grid index taken from the sampler

    def catch_up(self, sampler: BookSampler, extra: FloatArray | None = None) -> tuple[float, float] | None:
        """Fit the sampler's new rows (and ``extra``, one (4, L) row) in one call; feed the estimators.

        Returns the fit of ``extra`` when given.
        """
        if extra is None and not sampler.has_rows_after(self.consumed):
            return None  # (so ``parts`` below is never empty)
        idx, rows = sampler.rows_after(self.consumed)
        parts = ([rows] if idx.size else []) + ([extra[None]] if extra is not None else [])
        beta, gamma = self._fit(np.concatenate(parts))
        if idx.size:
            t = idx * self.settings.sample_ns
            for kind, values in (("beta", beta[:idx.size]), ("gamma", gamma[:idx.size])):
                self.est[kind].add(idx, values / self.profile.factor(kind, t))
            self.consumed = int(idx[-1])
        return (float(beta[-1]), float(gamma[-1])) if extra is not None else None

    def _fit(self, picked: FloatArray) -> tuple[FloatArray, FloatArray]:
        cost = walk_cost(picked, self.sizes, side=self.side, penalty=self._penalty)
        return self._grid.fit(cost)

    def now(self, sampler: BookSampler, book: BookLike, i: int) -> ImpactParams:
        """Catch up, and return ``beta, gamma`` of row ``i``'s own cost curve on the grid.

        Raises ``DataError`` when the row has no usable book on the walked side.
        """
        if sampler.has_rows_after(self.consumed):
            fit = self.catch_up(sampler, book_rows(book, np.array([i]))[0])
            assert fit is not None
        else:  # nothing new sampled (most decisions): walk the row's levels straight from the book
            cost = walk_cost_levels(book.bid_px[i].tolist(), book.bid_sz[i].tolist(), book.ask_px[i].tolist(),
                                    book.ask_sz[i].tolist(), self._sizes, self.side, self._penalty)
            beta, gamma = self._grid.fit(np.array([cost], dtype=np.float64))
            fit = (float(beta[0]), float(gamma[0]))
        if not (math.isfinite(fit[0]) and math.isfinite(fit[1])):
            raise DataError("the decision snapshot has no usable book on the walked side")
        return ImpactParams(fit[0], fit[1])

    def forecast(self, now: ImpactParams, sampler: BookSampler, n_slots: int, *, ts_ns: int,
                 period_s: float) -> SlotForecast:
        """Per-slot ``beta, gamma`` and volume for slots ``0..n_slots-1`` from ``ts_ns`` (module docstring)."""
        self.catch_up(sampler)
        k = np.arange(n_slots, dtype=np.float64)
        t = int(ts_ns) + np.arange(n_slots, dtype=np.int64) * round(period_s * NS_PER_S)
        rho: dict[str, float] = {}
        dev: dict[str, float] = {}
        paths = []
        for kind, value in (("beta", now.beta), ("gamma", now.gamma)):
            est, f = self.est[kind], self.profile.factor(kind, t)
            rho[kind] = float(est.persistence(period_s)) if est.ready else 1.0
            dev[kind] = est.deviation(value / float(f[0])) if est.ready and n_slots else 0.0
            if est.ready and n_slots:
                path = est.level * f * (1.0 + est.persistence(k * period_s) * dev[kind])
                path[0] = value
            else:
                path = value * f / (f[0] if n_slots else 1.0)
            paths.append(np.asarray(path, dtype=np.float64))
        vol = sampler.volume_forecast(n_slots, ts_ns=ts_ns, period_s=period_s)
        if vol is not None:
            rho["volume"], dev["volume"] = vol[1], vol[2]
        return SlotForecast(paths[0], paths[1], None if vol is None else vol[0], now, rho, dev)

    # -------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        """JSON-able state (the profile is not included: pass it again to :meth:`from_state`)."""
        return {"kind": "parent_forecast", "version": self.VERSION, "side": self.side,
                "sizes": self.sizes.tolist(), "penalty_ticks": self.penalty_ticks, "tick": self.tick,
                "estimators": {k: e.state() for k, e in self.est.items()}, "consumed": self.consumed}

    @classmethod
    def from_state(cls, state: dict[str, Any], *, profile: IntradayProfile | None = None) -> ParentForecaster:
        """Rebuild from :meth:`state`; raises ``DataError`` for another kind or version."""
        if state.get("kind") != "parent_forecast" or state.get("version") != cls.VERSION:
            raise DataError(f"not a parent_forecast v{cls.VERSION} state")
        est = {k: ReversionEstimator.from_state(s) for k, s in state["estimators"].items()}
        fc = cls(state["side"], np.asarray(state["sizes"], dtype=np.float64), est["beta"].settings,
                 profile=profile, penalty_ticks=state["penalty_ticks"], tick=state["tick"])
        fc.est = est
        fc.consumed = None if state["consumed"] is None else int(state["consumed"])
        return fc
