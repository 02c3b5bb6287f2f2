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

The fits (:func:`fit_quadratic`, :func:`fit_power_law`) live in
:mod:`agent.impact_fit` and are re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from agent.errors import DataError
from agent.impact_fit import (
    GAMMA_FLOOR,
    PowerLawFit,
    QuadraticFit,
    fit_power_law,
    fit_quadratic,
    quadratic_from_moments,
)
from agent.model import NS_PER_S, BookLike, ImpactParams, Side

if TYPE_CHECKING:
    from agent.profile import IntradayProfile

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


# ------------------------------------------------------------------ cost curves
@dataclass(frozen=True, slots=True, eq=False)
class CostCurves:
    """Cost curves of a batch of snapshots over a grid of order sizes.

    Attributes
    ----------
    cost : (n, g) dollars above mid (positive = cost); NaN on invalid rows.
    mid : (n,) mid price (NaN when a side is empty).
    sizes : (g,) order sizes, shares.
    extrapolated : (n, g) True where the size exceeds the visible depth.
    valid : (n,) False for rows excluded (walked side empty or mid undefined).
    """

    cost: FloatArray
    mid: FloatArray
    sizes: FloatArray
    extrapolated: npt.NDArray[np.bool_]
    valid: npt.NDArray[np.bool_]

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())

    @property
    def n_excluded(self) -> int:
        """Rows excluded because the walked side is empty or the mid is undefined."""
        return int(self.valid.size - self.valid.sum())

    @property
    def extrapolated_fraction(self) -> float:
        """Fraction of (valid row, size) points beyond the visible depth; 0 without valid rows."""
        n = self.n_valid * self.sizes.size
        return float(self.extrapolated[self.valid].sum() / n) if n else 0.0

    def bps(self) -> FloatArray:
        """Average cost per share in basis points of mid: ``1e4 * C(x) / (x * m)``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(1e4 * self.cost / (self.sizes[None, :] * self.mid[:, None]))


_BLOCK = 8192  # rows per block: the (g, block) temporaries stay in cache


def _walk_block(px: FloatArray, sz: FloatArray, mid: FloatArray, top: npt.NDArray[np.bool_],
                x: FloatArray, side: Side, pen: float, cost_out: FloatArray,
                ext_out: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Cost curves of one block of rows into ``cost_out``/``ext_out`` (g, m); return the valid mask."""
    s = 1.0 if side == "buy" else -1.0
    n, levels = px.shape
    with np.errstate(invalid="ignore"):
        usable = (sz > 0) & np.isfinite(px)
    avail = np.where(usable, sz, 0.0)
    pxc = np.where(usable, px, 0.0)
    worst = (np.where(usable, px, -np.inf).max(axis=1) if side == "buy"
             else np.where(usable, px, np.inf).min(axis=1))
    valid = top & usable.any(axis=1)
    # columns 0..L: depth/notional *before* level k, and the price paid inside level k
    depth0 = np.zeros((n, levels + 1))
    notional0 = np.zeros((n, levels + 1))
    np.cumsum(avail, axis=1, out=depth0[:, 1:])
    np.cumsum(avail * pxc, axis=1, out=notional0[:, 1:])
    pk = np.empty((n, levels + 1))
    pk[:, :levels] = pxc
    pk[:, levels] = np.where(valid, worst + s * pen, 0.0)
    # C(x) = a_k + b_k x with a_k = s (N_{k-1} - p_k D_{k-1}), b_k = s (p_k - m)
    coef_a = s * (notional0 - pk * depth0)
    coef_b = s * (pk - np.where(valid, mid, 0.0)[:, None])
    # k in (g, n) layout: each level is one contiguous compare per size
    depth_t = np.ascontiguousarray(depth0[:, 1:].T)
    k = np.zeros((x.size, n), dtype=np.int8 if levels < 127 else np.intp)
    for j in range(levels):
        k += x[:, None] > depth_t[j][None, :]
    flat = k.astype(np.intp)
    flat += (np.arange(n, dtype=np.intp) * (levels + 1))[None, :]
    np.take(coef_b.ravel(), flat, out=cost_out)
    cost_out *= x[:, None]
    cost_out += np.take(coef_a.ravel(), flat)
    cost_out[:, ~valid] = np.nan
    np.equal(k, levels, out=ext_out)
    ext_out &= valid[None, :]
    return valid


def cost_curves(
    bid_px: FloatArray,
    bid_sz: FloatArray,
    ask_px: FloatArray,
    ask_sz: FloatArray,
    sizes: FloatArray,
    *,
    side: Side,
    penalty_per_share: float | None = None,
    tick: float = 0.01,
    penalty_ticks: float = 3.0,
) -> CostCurves:
    r"""Dollar cost above mid of trading each size now, for every snapshot at once.

    With cumulative visible depth :math:`D_j = \sum_{i\le j} q_i` and notional
    :math:`N_j = \sum_{i\le j} p_i q_i` (``D_{-1} = N_{-1} = 0``), the level in
    which size ``x`` ends is ``k = #{j : D_j < x}`` and

    .. math:: C(x) = s\,[N_{k-1} + p_k (x - D_{k-1}) - m x]

    where ``p_L`` (``x > D``, beyond the visible depth) is the worst visible
    price plus ``s * penalty`` (``penalty_per_share``, default
    ``penalty_ticks * tick``). Vectorised over rows and sizes (a loop over
    the L <= 10 levels only); identical to :func:`walk_levels` inside the book.

    Parameters
    ----------
    bid_px, bid_sz, ask_px, ask_sz : (n, L) best level first, empty = NaN / 0.
    sizes : (g,) non-negative order sizes in shares.
    side : ``buy`` walks the asks, ``sell`` walks the bids.
    """
    bid_px = np.asarray(bid_px, dtype=np.float64)
    ask_px = np.asarray(ask_px, dtype=np.float64)
    bid_sz = np.asarray(bid_sz, dtype=np.float64)
    ask_sz = np.asarray(ask_sz, dtype=np.float64)
    x = np.asarray(sizes, dtype=np.float64)
    if x.ndim != 1 or (x < 0).any() or not np.isfinite(x).all():
        raise ValueError("sizes must be a 1-D array of finite non-negative share counts")
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    pen = penalty_ticks * tick if penalty_per_share is None else float(penalty_per_share)
    px, sz = (ask_px, ask_sz) if side == "buy" else (bid_px, bid_sz)
    n = px.shape[0]
    with np.errstate(invalid="ignore"):
        top = (bid_sz[:, 0] > 0) & np.isfinite(bid_px[:, 0]) & (ask_sz[:, 0] > 0) & np.isfinite(ask_px[:, 0])
        mid = np.where(top, 0.5 * (bid_px[:, 0] + ask_px[:, 0]), np.nan)
    # (g, n) layout, filled in cache-sized blocks of rows; returned as (n, g) views
    cost_t = np.empty((x.size, n))
    ext_t = np.empty((x.size, n), dtype=bool)
    valid = np.empty(n, dtype=bool)
    for a in range(0, n, _BLOCK):
        b = min(n, a + _BLOCK)
        valid[a:b] = _walk_block(px[a:b], sz[a:b], mid[a:b], top[a:b], x, side, pen,
                                 cost_t[:, a:b], ext_t[:, a:b])
    cost = cost_t.T
    extrapolated = ext_t.T
    return CostCurves(cost=cost, mid=mid, sizes=x, extrapolated=extrapolated, valid=valid)


def curves_from_book(
    book: BookLike, sizes: FloatArray, *, side: Side, penalty_ticks: float = 3.0,
    tick: float = 0.01, penalty_per_share: float | None = None,
) -> CostCurves:
    """:func:`cost_curves` on the arrays of a ``BookBatch`` (or anything ``BookLike``)."""
    return cost_curves(book.bid_px, book.bid_sz, book.ask_px, book.ask_sz, sizes, side=side,
                       penalty_per_share=penalty_per_share, tick=tick, penalty_ticks=penalty_ticks)


def default_sizes(quantity: float, n_periods: int, *, multiple: float = 4.0, points: int = 20) -> FloatArray:
    """Fitting grid for an order: ``points`` sizes evenly spaced up to ``multiple * quantity / n_periods``.

    ``x_j = j * x_max / points`` for ``j = 1..points``: the sizes a schedule of
    ``n_periods`` children is likely to trade (a few times the TWAP slice).
    """
    if not (quantity > 0 and n_periods > 0 and multiple > 0 and points > 0):
        raise ValueError("quantity, n_periods, multiple and points must be positive")
    top = multiple * float(quantity) / int(n_periods)
    return np.asarray(np.arange(1, points + 1) * (top / points), dtype=np.float64)


def depth_sizes(book: BookLike, *, side: Side, points: int = 20) -> FloatArray:
    """Fitting grid when no order is known: evenly spaced up to the median visible depth of ``side``.

    Used by ``mpc-agent fit`` without ``--quantity`` so that the fit describes
    the visible book rather than the extrapolation.
    """
    sz = book.ask_sz if side == "buy" else book.bid_sz
    total = np.where(sz > 0, sz, 0.0).sum(axis=1)
    total = total[total > 0]
    if total.size == 0:
        raise DataError(f"no snapshot has a non-empty {'ask' if side == 'buy' else 'bid'} side to size the grid")
    top = float(np.median(total))
    return np.asarray(np.arange(1, points + 1) * (top / points), dtype=np.float64)


def ew_weights(ts_event: npt.NDArray[np.int64], ref_ns: int, half_life_s: float) -> FloatArray:
    """Exponential weights in event time: ``w_i = 2 ** (-(ref - t_i) / half_life)``."""
    age_s = (ref_ns - np.asarray(ts_event, dtype=np.int64)).astype(np.float64) / NS_PER_S
    return np.asarray(np.exp2(-age_s / half_life_s), dtype=np.float64)


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
    :class:`agent.errors.DataError`; check :attr:`ready` first.
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
        """``beta[k], gamma[k]`` for slots ``k = 0..n_slots-1`` starting at ``ts_ns``.

        ``beta_k = beta * r_beta(T, ts_ns + k * period)`` where ``r`` is the
        intraday profile ratio from the time of the estimate ``T`` (flat: 1);
        gamma likewise, floored at ``GAMMA_FLOOR``.
        """
        p = self.current()
        beta = np.full(n_slots, p.beta)
        gamma = np.full(n_slots, p.gamma)
        if profile is not None and n_slots > 0:
            t = int(ts_ns) + np.arange(n_slots, dtype=np.int64) * round(period_s * NS_PER_S)
            ref = int(self.last_ts if self.last_ts is not None else ts_ns)
            beta = beta * profile.ratio("beta", ref, t)
            gamma = np.maximum(gamma * profile.ratio("gamma", ref, t), GAMMA_FLOOR)
        return beta, gamma

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
