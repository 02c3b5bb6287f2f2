r"""One symbol's exponentially weighted cost curve, shared by all of its parent orders.

Every parent order on a symbol fits its quadratic ``g(x) = beta x + gamma x^2``
on its own size range, but the book it walks is the symbol's. This module
walks each snapshot ONCE per symbol and side, whatever the number of parents,
and keeps the exponentially weighted average cost curve on a fixed geometric
lattice of sizes ``x_t = 2^{t/R}`` (``R`` points per doubling); a parent reads
the average curve at its own sizes by linear interpolation between lattice
points (:meth:`SymbolCostCurve.average_at`).

The walk is exact at every lattice point and its cost does not depend on the
lattice size. With cumulative depth ``D_{i,j}`` after level ``j`` of row
``i`` and the piecewise-linear cost ``C_i(x) = a_{i,k} + b_{i,k} x`` of
:func:`agent.core.impact.curves.cost_curves` (``k`` = number of levels
fully consumed, ``k = L`` beyond the visible depth), ``k`` steps up by one at
lattice index ``u_{i,j} = floor(R log2 D_{i,j}) + 1``, so with weights
``w_i``

.. math::

    S(x_t) = \sum_i w_i C_i(x_t)
           = \sum_i w_i (a_{i,0} + b_{i,0} x_t)
           + \sum_{i,j} w_i [t \ge u_{i,j}]\,((a_{i,j+1}-a_{i,j}) + (b_{i,j+1}-b_{i,j}) x_t)

is a weighted histogram over ``u`` (``numpy.bincount``) followed by a
cumulative sum over the lattice: O(rows x levels) per batch. The weights
decay as :math:`2^{-\Delta T/h}` when event time advances, so updating in
chunks equals one update over the concatenation (as in
:class:`agent.core.impact.estimator.OnlineImpactEstimator`, whose per-parent
grid this replaces in the engine).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.core.errors import DataError
from agent.core.impact.curves import ew_weights
from agent.core.model import NS_PER_S, BookLike, Side

FloatArray = npt.NDArray[np.float64]

PER_DOUBLING = 16
"""Lattice points per doubling of size (ratio 2^(1/16) = 1.044 between neighbours)."""
LOG2_MIN, LOG2_MAX = -10, 34
"""Lattice range: 2^-10 (a thousandth of a share) to 2^34 (17 billion shares)."""


class SymbolCostCurve:
    r"""EW-average cost curve of one side of one symbol on a geometric size lattice.

    Parameters
    ----------
    side : ``buy`` walks the asks, ``sell`` the bids.
    half_life_s : half-life of the exponential weights, seconds of event time.
    penalty_ticks, tick : beyond the visible depth the walk continues at the worst
        visible price plus ``penalty_ticks * tick`` per share (explicit extrapolation).
    """

    VERSION = 1

    def __init__(self, side: Side, *, half_life_s: float = 300.0, penalty_ticks: float = 3.0,
                 tick: float = 0.01) -> None:
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        if not half_life_s > 0:
            raise ValueError("half_life_s must be positive")
        self.side: Side = side
        self.half_life_s = float(half_life_s)
        self.penalty_ticks = float(penalty_ticks)
        self.tick = float(tick)
        self.t0 = LOG2_MIN * PER_DOUBLING
        self.sizes = np.exp2(np.arange(self.t0, LOG2_MAX * PER_DOUBLING + 1) / PER_DOUBLING)
        n = self.sizes.size
        self.weight = 0.0
        # sums over the lattice, kept as settled arrays plus pending differences by lattice index
        # (a histogram, cumulated only when read: an update costs no pass over the lattice)
        self._settled = np.zeros((3, n))  # sum_i w_i a_{i,k_i(t)}, sum_i w_i b_{i,k_i(t)}, sum_i w_i [x_t > D_i]
        self._pending = np.zeros((3, n + 1))
        self._dirty = False
        self.mid_sum = 0.0
        self.last_ts: int | None = None
        self.snapshots = 0
        self.excluded = 0
        self.version = 0  # bumped at every update that changes the sums (fits cache on it)

    @property
    def ready(self) -> bool:
        """True once at least one usable snapshot has been seen."""
        return self.weight > 0.0

    def update(self, book: BookLike) -> None:
        """Add a time-ordered batch; rows without both best levels (no walk, no mid) are skipped and counted."""
        update_curves([self], book)

    def _decay_to(self, ts_max: int) -> None:
        ref = ts_max if self.last_ts is None else max(self.last_ts, ts_max)
        if self.last_ts is not None and ref != self.last_ts:
            d = math.exp2(-(ref - self.last_ts) / NS_PER_S / self.half_life_s)
            self.weight *= d
            self.mid_sum *= d
            self._settled *= d
            if self._dirty:
                self._pending *= d
        self.last_ts = ref

    def _sums(self) -> FloatArray:
        """The lattice sums ``(3, n)``: pending differences cumulated into the settled arrays."""
        if self._dirty:
            self._settled += np.cumsum(self._pending, axis=1)[:, :-1]
            self._pending[:] = 0.0
            self._dirty = False
        return self._settled

    @property
    def a_sum(self) -> FloatArray:
        return self._sums()[0]

    @property
    def b_sum(self) -> FloatArray:
        return self._sums()[1]

    @property
    def ext_sum(self) -> FloatArray:
        return self._sums()[2]

    # ------------------------------------------------------------------ reads
    def _require(self) -> None:
        if not self.ready:
            raise DataError("no usable snapshot of this symbol yet (both sides of the book are needed); "
                            "feed book data before planning")

    def average_at(self, sizes: FloatArray) -> FloatArray:
        """EW-average cost ``S(x) / W`` at ``sizes`` (dollars), linear between lattice points."""
        self._require()
        x = np.asarray(sizes, dtype=np.float64)
        sums = self._sums()
        lattice = (sums[0] + sums[1] * self.sizes) / self.weight
        return np.asarray(np.interp(x, self.sizes, lattice))

    def extrapolated_fraction_at(self, sizes: FloatArray) -> float:
        """EW-weighted fraction of ``sizes`` beyond the visible depth (0 before data)."""
        if not self.ready:
            return 0.0
        frac = np.interp(np.asarray(sizes, dtype=np.float64), self.sizes, self.ext_sum / self.weight)
        return float(np.mean(frac))

    @property
    def mid(self) -> float:
        """EW-average mid price (NaN before data)."""
        return self.mid_sum / self.weight if self.ready else math.nan

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """JSON-able snapshot (settings and sufficient statistics), compact.

        The lattice sums are step functions of the lattice index (they change only where some
        row's depth falls), so they are stored as their first value plus the non-zero steps:
        indices and float64 deltas, base64-encoded (a few kB instead of ~50 kB of JSON numbers).
        """
        steps = np.stack([self.a_sum, self.b_sum, self.ext_sum])
        delta = np.diff(steps, axis=1)
        idx = np.flatnonzero(np.any(delta != 0.0, axis=0)).astype(np.int32)
        return {"version": self.VERSION, "side": self.side, "half_life_s": self.half_life_s,
                "penalty_ticks": self.penalty_ticks, "tick": self.tick, "per_doubling": PER_DOUBLING,
                "log2_range": [LOG2_MIN, LOG2_MAX], "weight": self.weight, "mid_sum": self.mid_sum,
                "head": steps[:, 0].tolist(), "step_index": _b64(idx), "steps": _b64(delta[:, idx]),
                "last_ts": self.last_ts, "snapshots": self.snapshots, "excluded": self.excluded}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SymbolCostCurve:
        """Rebuild from :meth:`state`; raises ``DataError`` for another version or lattice."""
        if (state.get("version") != cls.VERSION or state.get("per_doubling") != PER_DOUBLING
                or list(state.get("log2_range", ())) != [LOG2_MIN, LOG2_MAX]):
            raise DataError("unsupported symbol cost-curve state (version or lattice differs)")
        c = cls(state["side"], half_life_s=state["half_life_s"], penalty_ticks=state["penalty_ticks"],
                tick=state["tick"])
        c.weight, c.mid_sum = float(state["weight"]), float(state["mid_sum"])
        idx = np.frombuffer(base64.b64decode(state["step_index"]), dtype=np.int32)
        delta = np.zeros((3, c.sizes.size - 1))
        delta[:, idx] = np.frombuffer(base64.b64decode(state["steps"]), dtype=np.float64).reshape(3, -1)
        c._settled = np.asarray(state["head"], dtype=np.float64)[:, None] + np.concatenate(
            [np.zeros((3, 1)), np.cumsum(delta, axis=1)], axis=1)
        c.last_ts = None if state["last_ts"] is None else int(state["last_ts"])
        c.snapshots, c.excluded = int(state["snapshots"]), int(state["excluded"])
        c.version = 1
        return c


def _b64(a: npt.NDArray[Any]) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def update_curves(curves: Sequence[SymbolCostCurve], book: BookLike) -> None:
    """Add a time-ordered batch to ``curves`` in one pass over stacked arrays (the buy and the sell
    curve of one half-life, say): the same sums as updating each alone, for about the numpy calls
    of one. Curves of other settings or times are updated one by one.

    A row is used when both best levels are there (a mid; then both walks have a level) and
    skipped (``excluded``) otherwise.
    """
    first = curves[0]
    if len(curves) > 1 and any((c.half_life_s, c.penalty_ticks, c.tick, c.last_ts)
                               != (first.half_life_s, first.penalty_ticks, first.tick, first.last_ts)
                               for c in curves):
        for c in curves:
            update_curves([c], book)
        return
    n = len(book)
    if n == 0:
        return
    bpx, bsz, apx, asz = book.bid_px[:, 0], book.bid_sz[:, 0], book.ask_px[:, 0], book.ask_sz[:, 0]
    valid = (bsz > 0) & np.isfinite(bpx) & (asz > 0) & np.isfinite(apx)  # NaN compares False: no warning
    m = int(np.count_nonzero(valid))
    for c in curves:
        c.excluded += n - m
    if m == 0:
        return
    ts = np.asarray(book.ts_event, dtype=np.int64)
    sides = [(book.ask_px, book.ask_sz) if c.side == "buy" else (book.bid_px, book.bid_sz) for c in curves]
    if m < n:
        ts, bpx, apx = ts[valid], bpx[valid], apx[valid]
        sides = [(px[valid], sz[valid]) for px, sz in sides]
    mid = 0.5 * (bpx + apx)
    t_ref = int(ts[-1]) if m == 1 else int(ts.max())
    for c in curves:
        c._decay_to(t_ref)
    assert first.last_ts is not None
    w = ew_weights(ts, first.last_ts, first.half_life_s)
    k = len(curves)
    px = np.asarray(sides[0][0] if k == 1 else np.concatenate([p for p, _ in sides]), dtype=np.float64)
    sz = sides[0][1] if k == 1 else np.concatenate([z for _, z in sides])
    sgn = np.array([1.0 if c.side == "buy" else -1.0 for c in curves])
    _accumulate(curves, px, sz, sgn, mid, w)
    w_sum, mid_w = float(w.sum()), float(w @ mid)
    for c in curves:
        c.weight += w_sum
        c.mid_sum += mid_w
        c.snapshots += m
        c.version += 1


def _accumulate(curves: Sequence[SymbolCostCurve], px: FloatArray, sz: FloatArray, sgn: FloatArray,
                mid: FloatArray, w: FloatArray) -> None:
    """Add ``sum_i w_i C_i(x_t)`` for every lattice point of each curve (module docstring), as
    differences by lattice index: the base segment at index 0, each level's step at ``u``.
    ``px, sz``: the walked levels of every curve's rows, stacked (``m`` rows per curve)."""
    k, m = len(curves), len(w)
    c0 = curves[0]
    levels = px.shape[1]
    s = sgn[0] if k == 1 else np.repeat(sgn, m)[:, None]
    usable = (sz > 0) & np.isfinite(px)
    avail = np.where(usable, sz, 0.0)
    pxc = np.where(usable, px, 0.0)
    pk = np.empty((k * m, levels + 1))
    pk[:, :levels] = pxc
    worst = np.where(usable, px * s, -np.inf).max(axis=1)  # the worst usable level: max ask, min bid
    pk[:, levels] = (worst * s if k == 1 else worst * s[:, 0]) + (s if k == 1 else s[:, 0]) * c0.penalty_ticks * c0.tick
    depth0 = np.zeros((k * m, levels + 1))
    notional0 = np.zeros((k * m, levels + 1))
    np.cumsum(avail, axis=1, out=depth0[:, 1:])
    np.cumsum(avail * pxc, axis=1, out=notional0[:, 1:])
    mids = mid[:, None] if k == 1 else np.concatenate((mid,) * k)[:, None]
    a = s * (notional0 - pk * depth0)  # C(x) = a_k + b_k x inside segment k
    b = s * (pk - mids)
    size = c0.sizes.size
    # first lattice index past D: floor(R log2 D) + 1 (an empty prefix, D = 0, maps to index 0)
    tau = np.log2(np.maximum(depth0[:, 1:], 1e-300))
    tau *= PER_DOUBLING
    u = np.floor(tau).astype(np.intp)
    u += 1 - c0.t0
    np.maximum(u, 0, out=u)
    np.minimum(u, size, out=u)
    if k > 1:  # curve j's bins are [j (size + 1), (j + 1) (size + 1))
        u += np.repeat(np.arange(k, dtype=np.intp) * (size + 1), m)[:, None]
    ww = w if k == 1 else np.concatenate((w,) * k)
    wcol = ww[:, None]
    bins = k * (size + 1)
    da = np.bincount(u.ravel(), (wcol * (a[:, 1:] - a[:, :-1])).ravel(), bins).reshape(k, size + 1)
    db = np.bincount(u.ravel(), (wcol * (b[:, 1:] - b[:, :-1])).ravel(), bins).reshape(k, size + 1)
    de = np.bincount(u[:, -1], ww, bins).reshape(k, size + 1)
    for j, c in enumerate(curves):
        pend = c._pending
        rows = slice(j * m, (j + 1) * m)
        pend[0, 0] += float(w @ a[rows, 0])
        pend[1, 0] += float(w @ b[rows, 0])
        pend[0] += da[j]
        pend[1] += db[j]
        pend[2] += de[j]
        c._dirty = True
