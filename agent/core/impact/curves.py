"""Cost curves from the book, vectorised over snapshots and order sizes.

Cost of trading ``x`` shares now against one snapshot with mid ``m``
(``s = +1`` buy walking the asks, ``s = -1`` sell walking the bids)::

    C(x) = s * sum_i (p_i - m) q_i(x)

the same level walk as :func:`agent.core.impact.estimator.walk_levels` (the fill
simulator's). Beyond the visible depth ``D`` the curve is extrapolated
explicitly at the worst visible price plus a penalty per share
(``penalty_ticks * tick`` by default), and every extrapolated point is
flagged. Also the fitting grids (:func:`default_sizes`, :func:`depth_sizes`)
and event-time exponential weights. Re-exported by :mod:`agent.core.impact.estimator`.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.core.errors import DataError
from agent.core.model import NS_PER_S, BookLike, Side

FloatArray = npt.NDArray[np.float64]

__all__ = ["CostCurves", "cost_curves", "curves_from_book", "default_sizes", "depth_sizes", "ew_weights",
           "walk_cost", "walk_cost_levels"]


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


SCALAR_WALK_ROWS = 8
"""Up to this many rows :func:`walk_cost` walks row by row in scalar arithmetic."""


def walk_cost(rows: FloatArray, sizes: FloatArray, *, side: Side, penalty: float) -> FloatArray:
    """``cost_curves(...).cost`` of rows (n, 4, L) (bid_px, bid_sz, ask_px, ask_sz) on a trusted grid.

    The decision path's walk: no input checks and no extrapolation flags.
    A few rows (a decision snapshot and the samples since the parent's last
    decision) are walked one by one by :func:`_walk_one`, the same formula in
    scalar arithmetic: numpy's fixed cost per call is most of the time of a
    vectorised walk of a few rows (one row: ~75 us against 8; the two cross
    near 10 rows). Both give the same bits (``tests/unit/agent/test_walk_cost.py``).
    """
    n = rows.shape[0]
    if 0 < n <= SCALAR_WALK_ROWS:
        return np.array([_walk_one(r, sizes, side, penalty) for r in rows], dtype=np.float64).reshape(n, -1)
    c = cost_curves(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], sizes, side=side, penalty_per_share=penalty)
    return c.cost


def _walk_one(row: FloatArray, sizes: FloatArray, side: Side, pen: float) -> list[float]:
    """:func:`_walk_block` for one row (4, L), operation for operation (same rounding); NaN when invalid."""
    bp, bs, ap, az = row.tolist()
    return walk_cost_levels(bp, bs, ap, az, sizes.tolist(), side, pen)


def walk_cost_levels(bp: list[float], bs: list[float], ap: list[float], az: list[float], x: list[float],
                     side: Side, pen: float) -> list[float]:
    """The cost of one snapshot's levels (float lists, best first) at sizes ``x``: :func:`_walk_one`
    without the array (the decision path reads the levels of its row straight from the book)."""
    top = bs[0] > 0 and math.isfinite(bp[0]) and az[0] > 0 and math.isfinite(ap[0])
    px, sz = (ap, az) if side == "buy" else (bp, bs)
    usable = [q > 0 and math.isfinite(p) for p, q in zip(px, sz, strict=True)]
    if not (top and any(usable)):
        return [math.nan] * len(x)
    s = 1.0 if side == "buy" else -1.0
    mid = 0.5 * (bp[0] + ap[0])
    depth: list[float] = []
    coef_a: list[float] = []
    coef_b: list[float] = []
    d = n = 0.0
    for p, q, ok in zip(px, sz, usable, strict=True):
        pc = p if ok else 0.0
        coef_a.append(s * (n - pc * d))  # before level k: depth d, notional n
        coef_b.append(s * (pc - mid))
        a = q if ok else 0.0
        d, n = d + a, n + a * pc
        depth.append(d)
    worst = max(p for p, ok in zip(px, usable, strict=True) if ok) if side == "buy" else \
        min(p for p, ok in zip(px, usable, strict=True) if ok)
    pk = worst + s * pen
    coef_a.append(s * (n - pk * d))
    coef_b.append(s * (pk - mid))
    out = []
    for xi in x:
        k = bisect_left(depth, xi)  # #{j: D_j < x}, D non-decreasing
        out.append(coef_b[k] * xi + coef_a[k])
    return out


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
