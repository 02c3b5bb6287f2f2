"""Market impact from the book: level walks, cost curves, fits, online estimation.

One cost model, two uses (DESIGN.md section 9): the planner's ``g_t`` is
fitted from :func:`cost_curves`, which walks the levels exactly like
:func:`walk_levels`, and the replay simulator fills child orders with the very
same :func:`walk_levels`.

Cost of trading ``x`` shares now against one snapshot with mid ``m``
(``s = +1`` buy walking the asks, ``s = -1`` sell walking the bids)::

    C(x) = s * sum_i (p_i - m) q_i(x)

Beyond the visible depth ``D`` the curve is extrapolated explicitly at the
worst visible price plus a penalty per share (``penalty_ticks * tick`` by
default), and every extrapolated point is flagged.

The cost curves live in :mod:`agent.core.impact.curves` and the fits
(:func:`fit_quadratic`, :func:`fit_power_law`) in :mod:`agent.core.impact.fit`;
both are re-exported here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from agent.core.errors import DataError
from agent.core.impact.curves import (
    CostCurves,
    cost_curves,
    curves_from_book,
    default_sizes,
    depth_sizes,
    ew_weights,
)
from agent.core.impact.fit import (
    GAMMA_FLOOR,
    PowerLawFit,
    QuadraticFit,
    fit_power_law,
    fit_quadratic,
    quadratic_from_moments,
)
from agent.core.impact.parent_fit import profile_scaled
from agent.core.model import NS_PER_S, BookLike, ImpactParams, Side

if TYPE_CHECKING:
    from agent.core.forecast.profile import IntradayProfile

__all__ = [
    "GAMMA_FLOOR",
    "CostCurves",
    "OnlineImpactEstimator",
    "PowerLawFit",
    "QuadraticFit",
    "cost_curves",
    "curves_from_book",
    "default_sizes",
    "depth_sizes",
    "ew_weights",
    "fit_power_law",
    "fit_quadratic",
    "quadratic_from_moments",
    "walk_levels",
]

FloatArray = npt.NDArray[np.float64]


def walk_levels(
    px: FloatArray,
    sz: FloatArray,
    quantity: float | FloatArray,
    limit: float | FloatArray | None = None,
    *,
    buy: bool = True,
) -> tuple[FloatArray, FloatArray]:
    """Walk one side of the book, best level first, for ``quantity`` shares.

    Parameters
    ----------
    px, sz : (n, L) arrays of the side being consumed (asks for a buy, bids
        for a sell), best first; empty levels are NaN price / 0 size.
    quantity : shares wanted, scalar or (n,).
    limit : worst acceptable price (scalar or (n,)); levels beyond it are not
        touched. None means no limit.
    buy : True when consuming asks (limit is a maximum), False for bids
        (limit is a minimum).

    Returns
    -------
    filled : (n,) shares filled, ``min(quantity, depth within limit)``.
    notional : (n,) ``sum_i p_i q_i`` over the consumed levels, dollars.
    """
    px = np.asarray(px, dtype=np.float64)
    sz = np.asarray(sz, dtype=np.float64)
    usable = (sz > 0) & np.isfinite(px)
    if limit is not None:
        lim = np.asarray(limit, dtype=np.float64)
        lim = lim[:, None] if lim.ndim == 1 else lim
        with np.errstate(invalid="ignore"):
            usable &= (px <= lim) if buy else (px >= lim)
    avail = np.where(usable, sz, 0.0)
    before = np.cumsum(avail, axis=1) - avail
    q = np.asarray(quantity, dtype=np.float64)
    q = q[:, None] if q.ndim == 1 else q
    take = np.clip(q - before, 0.0, avail)
    filled = take.sum(axis=1)
    notional = (take * np.where(usable, px, 0.0)).sum(axis=1)
    return filled, notional


# ------------------------------------------------------------ online estimation
class OnlineImpactEstimator:
    r"""Exponentially weighted cost curve of one side, refitted on demand.

    Every usable snapshot ``i`` (walked side non-empty, mid defined) adds its
    cost curve ``C_i(x_j)`` with weight :math:`w_i = 2^{-(T - t_i)/h}`, where
    ``T`` is the latest event time seen and ``h = half_life_s``. The state is
    the weighted sums :math:`W = \sum_i w_i`, :math:`S_j = \sum_i w_i C_i(x_j)`
    (and the weighted count of extrapolated points), rescaled by
    :math:`2^{-\Delta T/h}` when ``T`` advances, so updating in chunks equals
    one update over the concatenation. :meth:`current` fits the quadratic and
    the power law to the average curve :math:`\bar C_j = S_j / W`, which is the
    weighted least-squares fit over all snapshots' points.

    Before any usable snapshot, :meth:`current` and :meth:`forecast` raise
    :class:`agent.core.errors.DataError`; check :attr:`ready` first.
    """

    VERSION = 1

    def __init__(self, side: Side, sizes: FloatArray, *, half_life_s: float = 300.0,
                 penalty_ticks: float = 3.0, tick: float = 0.01) -> None:
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        if not half_life_s > 0:
            raise ValueError("half_life_s must be positive")
        self.side: Side = side
        self.sizes = np.asarray(sizes, dtype=np.float64).copy()
        if self.sizes.ndim != 1 or self.sizes.size == 0:
            raise ValueError("sizes must be a non-empty 1-D grid of share counts")
        self.half_life_s = float(half_life_s)
        self.penalty_ticks = float(penalty_ticks)
        self.tick = float(tick)
        self.weight = 0.0
        self.curve_sum = np.zeros(self.sizes.size)
        self.extrapolated_sum = np.zeros(self.sizes.size)
        self.mid_sum = 0.0
        self.last_ts: int | None = None
        self.snapshots = 0
        self.excluded = 0
        self._fit: tuple[QuadraticFit, PowerLawFit] | None = None

    @property
    def ready(self) -> bool:
        """True once at least one usable snapshot has been seen."""
        return self.weight > 0.0

    def update(self, book: BookLike) -> None:
        """Add a batch of snapshots (time-ordered); rows with an empty side or no mid are skipped and counted."""
        if len(book) == 0:
            return
        curves = curves_from_book(book, self.sizes, side=self.side,
                                  penalty_ticks=self.penalty_ticks, tick=self.tick)
        self.excluded += curves.n_excluded
        if curves.n_valid == 0:
            return
        ts = np.asarray(book.ts_event, dtype=np.int64)[curves.valid]
        ref = int(ts.max()) if self.last_ts is None else max(self.last_ts, int(ts.max()))
        if self.last_ts is not None and ref != self.last_ts:
            decay = math.exp2(-(ref - self.last_ts) / NS_PER_S / self.half_life_s)
            self.weight *= decay
            self.curve_sum *= decay
            self.extrapolated_sum *= decay
            self.mid_sum *= decay
        w = ew_weights(ts, ref, self.half_life_s)
        self.weight += float(w.sum())
        self.curve_sum += w @ curves.cost[curves.valid]
        self.extrapolated_sum += w @ curves.extrapolated[curves.valid].astype(np.float64)
        self.mid_sum += float(w @ curves.mid[curves.valid])
        self.last_ts = ref
        self.snapshots += curves.n_valid
        self._fit = None

    def _require(self) -> None:
        if not self.ready:
            raise DataError("the impact estimator has not seen a usable snapshot yet "
                            "(both sides of the book are needed); feed book data before planning")

    def average_curve(self) -> FloatArray:
        """EW-average cost curve ``S / W`` over the size grid, dollars."""
        self._require()
        return np.asarray(self.curve_sum / self.weight)

    @property
    def mid(self) -> float:
        """EW-average mid price (NaN before data)."""
        return self.mid_sum / self.weight if self.ready else math.nan

    @property
    def extrapolated_fraction(self) -> float:
        """EW-weighted fraction of grid points beyond the visible depth."""
        return float(self.extrapolated_sum.mean() / self.weight) if self.ready else 0.0

    def fits(self) -> tuple[QuadraticFit, PowerLawFit]:
        """Quadratic and power-law fits of the average curve (cached until the next update)."""
        if self._fit is None:
            curve = self.average_curve()
            self._fit = (fit_quadratic(self.sizes, curve), fit_power_law(self.sizes, curve))
        return self._fit

    def current(self) -> ImpactParams:
        """Current ``beta, gamma`` (and ``alpha, delta``); raises ``DataError`` before data."""
        quad, power = self.fits()
        return ImpactParams(quad.beta, quad.gamma, power.alpha, power.delta)

    def forecast(self, n_slots: int, *, ts_ns: int, period_s: float,
                 profile: IntradayProfile | None = None) -> tuple[FloatArray, FloatArray]:
        """``beta[k], gamma[k]`` for slots ``k = 0..n_slots-1`` starting at ``ts_ns``
        (:func:`agent.core.impact.parent_fit.profile_scaled`)."""
        p = self.current()
        return profile_scaled(p.beta, p.gamma, n_slots, ts_ns=ts_ns, period_s=period_s,
                              ref_ts=self.last_ts, profile=profile)

    def state(self) -> dict[str, Any]:
        """JSON-able snapshot of the estimator (settings and sufficient statistics)."""
        return {
            "version": self.VERSION, "side": self.side, "sizes": self.sizes.tolist(),
            "half_life_s": self.half_life_s, "penalty_ticks": self.penalty_ticks, "tick": self.tick,
            "weight": self.weight, "curve_sum": self.curve_sum.tolist(),
            "extrapolated_sum": self.extrapolated_sum.tolist(), "mid_sum": self.mid_sum,
            "last_ts": self.last_ts, "snapshots": self.snapshots, "excluded": self.excluded,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OnlineImpactEstimator:
        """Rebuild an estimator from :meth:`state` (raises ``DataError`` on an unknown version)."""
        if state.get("version") != cls.VERSION:
            raise DataError(f"unsupported impact estimator state version {state.get('version')!r}")
        est = cls(state["side"], np.asarray(state["sizes"], dtype=np.float64),
                  half_life_s=state["half_life_s"], penalty_ticks=state["penalty_ticks"], tick=state["tick"])
        est.weight = float(state["weight"])
        est.curve_sum = np.asarray(state["curve_sum"], dtype=np.float64)
        est.extrapolated_sum = np.asarray(state["extrapolated_sum"], dtype=np.float64)
        est.mid_sum = float(state["mid_sum"])
        est.last_ts = None if state["last_ts"] is None else int(state["last_ts"])
        est.snapshots = int(state["snapshots"])
        est.excluded = int(state["excluded"])
        return est
