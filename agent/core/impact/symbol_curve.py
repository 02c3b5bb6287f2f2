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

import math
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
        """Add a time-ordered batch; rows with an empty walked side or no mid are skipped and counted."""
        n = len(book)
        if n == 0:
            return
        buy = self.side == "buy"
        px = book.ask_px if buy else book.bid_px
        sz = book.ask_sz if buy else book.bid_sz
        bpx, bsz, apx, asz = book.bid_px[:, 0], book.bid_sz[:, 0], book.ask_px[:, 0], book.ask_sz[:, 0]
        usable = (sz > 0) & np.isfinite(px)  # NaN sizes compare False: no warning, no errstate needed
        valid = (bsz > 0) & np.isfinite(bpx) & (asz > 0) & np.isfinite(apx) & usable.any(axis=1)
        n_valid = int(np.count_nonzero(valid))
        self.excluded += n - n_valid
        if n_valid == 0:
            return
        if n_valid < n:
            px, usable = px[valid], usable[valid]
            sz, bpx, apx = sz[valid], bpx[valid], apx[valid]
            ts = np.asarray(book.ts_event, dtype=np.int64)[valid]
        else:
            ts = np.asarray(book.ts_event, dtype=np.int64)
        avail = np.where(usable, sz, 0.0)
        mid = 0.5 * (bpx + apx)
        self._decay_to(int(ts[-1]) if n_valid == 1 else int(ts.max()))
        assert self.last_ts is not None
        w = ew_weights(ts, self.last_ts, self.half_life_s)
        self._accumulate(np.asarray(px, dtype=np.float64), avail, usable, mid, w)
        self.weight += float(w.sum())
        self.mid_sum += float(w @ mid)
        self.snapshots += n_valid
        self.version += 1

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

    def _accumulate(self, px: FloatArray, avail: FloatArray, usable: npt.NDArray[np.bool_],
                    mid: FloatArray, w: FloatArray) -> None:
        """Add ``sum_i w_i C_i(x_t)`` for every lattice point (see the module docstring), as
        differences by lattice index: the base segment at index 0, each level's step at ``u``."""
        s = 1.0 if self.side == "buy" else -1.0
        n, levels = px.shape
        pxc = np.where(usable, px, 0.0)
        pk = np.empty((n, levels + 1))
        pk[:, :levels] = pxc
        pk[:, levels] = (np.where(usable, px, -np.inf).max(axis=1) if s > 0
                         else np.where(usable, px, np.inf).min(axis=1)) + s * self.penalty_ticks * self.tick
        depth0 = np.zeros((n, levels + 1))
        notional0 = np.zeros((n, levels + 1))
        np.cumsum(avail, axis=1, out=depth0[:, 1:])
        np.cumsum(avail * pxc, axis=1, out=notional0[:, 1:])
        a = s * (notional0 - pk * depth0)  # C(x) = a_k + b_k x inside segment k
        b = s * (pk - mid[:, None])
        size = self.sizes.size
        # first lattice index past D: floor(R log2 D) + 1 (an empty prefix, D = 0, maps to index 0)
        tau = np.log2(np.maximum(depth0[:, 1:], 1e-300))
        tau *= PER_DOUBLING
        u = np.floor(tau).astype(np.intp)
        u += 1 - self.t0
        np.clip(u, 0, size, out=u)
        flat = u.ravel()
        wcol = w[:, None]
        pend = self._pending
        pend[0, 0] += float(w @ a[:, 0])
        pend[1, 0] += float(w @ b[:, 0])
        pend[0] += np.bincount(flat, (wcol * (a[:, 1:] - a[:, :-1])).ravel(), size + 1)
        pend[1] += np.bincount(flat, (wcol * (b[:, 1:] - b[:, :-1])).ravel(), size + 1)
        pend[2] += np.bincount(u[:, -1], w, size + 1)
        self._dirty = True

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
        """JSON-able snapshot (settings and sufficient statistics)."""
        return {"version": self.VERSION, "side": self.side, "half_life_s": self.half_life_s,
                "penalty_ticks": self.penalty_ticks, "tick": self.tick, "per_doubling": PER_DOUBLING,
                "log2_range": [LOG2_MIN, LOG2_MAX], "weight": self.weight, "a_sum": self.a_sum.tolist(),
                "b_sum": self.b_sum.tolist(), "ext_sum": self.ext_sum.tolist(), "mid_sum": self.mid_sum,
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
        c._settled = np.array([state["a_sum"], state["b_sum"], state["ext_sum"]], dtype=np.float64)
        c.last_ts = None if state["last_ts"] is None else int(state["last_ts"])
        c.snapshots, c.excluded = int(state["snapshots"]), int(state["excluded"])
        c.version = 1
        return c
