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

**Sampling.** :meth:`CostForecaster.update` samples the book on the absolute
grid ``j * sample_s`` (previous tick, chunk-invariant like the volatility
estimator): the last usable row (both sides quoted, not crossed) at or
before each grid time is walked over the grid and fitted, and the traded
volume in the lag window ending there is recorded. Grid points inside a gap
longer than ``max_gap_s`` (overnight) are skipped, which also breaks the AR pairs.

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
from agent.core.impact.curves import cost_curves
from agent.core.impact.fit import GAMMA_FLOOR
from agent.core.model import NS_PER_S, BookLike, FloatArray, ImpactParams, IntArray, Side

__all__ = ["CostForecaster", "SlotForecast", "fit_rows", "floor_gamma"]

KINDS = ("beta", "gamma", "volume")


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
    x = np.asarray(sizes, dtype=np.float64)
    c = np.atleast_2d(np.asarray(cost, dtype=np.float64))
    x2 = x * x
    s2, s3, s4 = float(x2.sum()), float(x2 @ x), float(x2 @ x2)
    det = s2 * s4 - s3 * s3
    ab = c @ np.stack([x, x2], axis=1)
    a, b = ab[:, 0], ab[:, 1]
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


class CostForecaster:
    """Samples one side of one symbol's book on a fixed size grid and forecasts each slot.

    Sampled rows are buffered and walked + fitted in one vectorised call when
    a forecast, an estimator or the state is read (or every ``FLUSH_ROWS``
    rows), so the per-chunk cost is bookkeeping; the estimators see the same
    samples in the same order however the book is chunked.

    Parameters
    ----------
    side : ``buy`` walks the asks, ``sell`` the bids.
    sizes : the fitting grid (shares), the parent's (``default_sizes``).
    settings : sampling grid, lag, half-lives, prior (``ReversionSettings``).
    profile : intraday profile used to deseasonalise samples and shape the level (flat when None).
    penalty_ticks, tick : extrapolation beyond the visible depth, as in the cost curves.
    """

    VERSION = 1
    FLUSH_ROWS = 256

    def __init__(self, side: Side, sizes: FloatArray, settings: ReversionSettings | None = None, *,
                 profile: IntradayProfile | None = None, penalty_ticks: float = 3.0,
                 tick: float = 0.01) -> None:
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        self.side: Side = side
        self.sizes = np.asarray(sizes, dtype=np.float64).copy()
        self.settings = settings or ReversionSettings()
        self.profile = profile if profile is not None else IntradayProfile.flat()
        self.penalty_ticks, self.tick = float(penalty_ticks), float(tick)
        self._est = {k: ReversionEstimator(self.settings) for k in KINDS}
        self.last_grid: int | None = None  # last grid time processed, ns
        self.last_event_ts: int | None = None
        self._row: FloatArray | None = None  # last usable row: (4, L) bid_px, bid_sz, ask_px, ask_sz
        self._row_src: tuple[BookLike, int] | None = None  # ... or where to read it (lazily)
        self.row_ts: int | None = None
        self.cum_traded = 0.0  # shares traded, all events seen
        self.tail_traded = 0.0  # ... of which at exactly last_event_ts (a later grid time may equal it)
        self.cum_at: dict[int, float] = {}  # grid index -> cum_traded at that grid time (last m)
        self._pending: list[tuple[IntArray, FloatArray]] = []  # (grid indices, rows (k, 4, L))

    @property
    def row(self) -> FloatArray | None:
        """The last usable row seen, (4, L): bid_px, bid_sz, ask_px, ask_sz (None before one)."""
        if self._row is None and self._row_src is not None:
            book, i = self._row_src
            self._row, self._row_src = _rows(book, np.array([i]))[0], None
        return self._row

    def estimator(self, kind: str) -> ReversionEstimator:
        """The ``beta``, ``gamma`` or ``volume`` estimator, up to date."""
        self._flush()
        return self._est[kind]

    # ------------------------------------------------------------ updates
    def update(self, book: BookLike) -> None:
        """Add a time-ordered batch of snapshots of the symbol (module docstring: Sampling)."""
        if len(book) == 0:
            return
        ts = np.asarray(book.ts_event, dtype=np.int64)
        bp, bs, ap, az = book.bid_px[:, 0], book.bid_sz[:, 0], book.ask_px[:, 0], book.ask_sz[:, 0]
        with np.errstate(invalid="ignore"):
            usable = np.flatnonzero((bs > 0) & (az > 0) & np.isfinite(bp) & np.isfinite(ap) & (bp < ap))
        trades = np.asarray(book.action) == "T"
        t_ts, t_sz = ts[trades], np.asarray(book.size, dtype=np.float64)[trades]
        grid = self._grid(int(ts[0]), int(ts[-1]))
        if grid.size:
            self._sample(grid, ts, book, usable, t_ts, t_sz)
        if usable.size:
            self._row, self._row_src, self.row_ts = None, (book, int(usable[-1])), int(ts[usable[-1]])
        tail = float(t_sz[t_ts == ts[-1]].sum())
        self.tail_traded = tail + (self.tail_traded if self.last_event_ts == int(ts[-1]) else 0.0)
        self.cum_traded += float(t_sz.sum())
        self.last_event_ts = int(ts[-1])
        if sum(r.shape[0] for _, r in self._pending) >= self.FLUSH_ROWS:
            self._flush()

    def _grid(self, first_ts: int, last_ts: int) -> IntArray:
        """Grid times not yet processed and strictly before ``last_ts`` (later rows cannot change them)."""
        step = self.settings.sample_ns
        first = self.last_grid + step if self.last_grid is not None else -(-first_ts // step) * step
        if first >= last_ts:
            return np.zeros(0, np.int64)
        return np.asarray(first + np.arange((last_ts - 1 - first) // step + 1, dtype=np.int64) * step)

    def _sample(self, grid: IntArray, ts: IntArray, book: BookLike, usable: IntArray,
                t_ts: IntArray, t_sz: FloatArray) -> None:
        """Buffer the previous usable row and record the lag-window volume at each fresh grid time."""
        gap = round(self.settings.max_gap_s * NS_PER_S)
        ev = ts if self.last_event_ts is None else np.concatenate([[self.last_event_ts], ts])
        pos = np.searchsorted(ev, grid, side="right") - 1
        fresh = (pos >= 0) & (ev[np.minimum(pos + 1, ev.size - 1)] - ev[np.maximum(pos, 0)] <= gap)
        upos = np.searchsorted(ts[usable], grid, side="right") - 1  # -1: the carried row (if any)
        row_ts = ts[usable[np.maximum(upos, 0)]] if usable.size else np.zeros(grid.size, np.int64)
        if self.row_ts is None:
            have = upos >= 0
        else:
            have = np.ones(grid.size, dtype=bool)
            row_ts = np.where(upos >= 0, row_ts, self.row_ts)
        idx = grid // self.settings.sample_ns
        self.last_grid = int(grid[-1])
        # shares traded strictly before each grid time (grid >= the previous batch's last event)
        before = self.cum_traded - np.where(grid == self.last_event_ts, self.tail_traded, 0.0)
        cum = before + np.concatenate([[0.0], np.cumsum(t_sz)])[np.searchsorted(t_ts, grid)]
        self._sample_volume(idx[fresh], cum[fresh])
        sel = np.flatnonzero(fresh & have & (grid - row_ts <= gap))
        if sel.size == 0:
            return
        old = upos[sel] < 0
        carried = self.row  # not None when a grid time precedes the batch's first usable row
        if usable.size:
            picked = _rows(book, usable[np.maximum(upos[sel], 0)])
            if old.any():
                picked[old] = carried
        else:  # every sampled grid time uses the carried row
            assert carried is not None
            picked = np.repeat(carried[None], sel.size, axis=0)
        self._pending.append((idx[sel], picked))

    def _sample_volume(self, idx: IntArray, cum: FloatArray) -> None:
        """Rate ``(C_j - C_{j-m}) / l`` of the lag window ending at each fresh grid point."""
        m = self.settings.lag_samples
        lag = m * self.settings.sample_s
        keep_idx, keep_rate = [], []
        for j, c in zip(idx.tolist(), cum.tolist(), strict=True):
            before = self.cum_at.get(j - m)
            if before is not None:
                keep_idx.append(j)
                keep_rate.append((c - before) / lag)
            self.cum_at[j] = c
        if idx.size:
            last = int(idx[-1])
            self.cum_at = {k: v for k, v in self.cum_at.items() if k > last - m}
        if keep_idx:
            j_arr = np.asarray(keep_idx, dtype=np.int64)
            factor = self.profile.factor("volume", j_arr * self.settings.sample_ns)
            self._est["volume"].add(j_arr, np.asarray(keep_rate) / factor)

    def _flush(self, extra: FloatArray | None = None) -> tuple[float, float] | None:
        """Walk and fit the buffered rows (and ``extra``, one (4, L) row) in one call; feed the estimators."""
        rows = [r for _, r in self._pending] + ([extra[None]] if extra is not None else [])
        if not rows:
            return None
        beta, gamma = self._fit(np.concatenate(rows))
        if self._pending:
            idx = np.concatenate([i for i, _ in self._pending])
            t = idx * self.settings.sample_ns
            n = idx.size
            for kind, values in (("beta", beta[:n]), ("gamma", gamma[:n])):
                self._est[kind].add(idx, values / self.profile.factor(kind, t))
            self._pending = []
        return (float(beta[-1]), float(gamma[-1])) if extra is not None else None

    def _fit(self, picked: FloatArray) -> tuple[FloatArray, FloatArray]:
        curves = cost_curves(picked[:, 0], picked[:, 1], picked[:, 2], picked[:, 3], self.sizes,
                             side=self.side, penalty_ticks=self.penalty_ticks, tick=self.tick)
        return fit_rows(self.sizes, curves.cost)

    # -------------------------------------------------------------- reads
    def now(self, book: BookLike, i: int) -> ImpactParams:
        """``beta, gamma`` of row ``i``'s own cost curve on the grid (raises ``DataError`` if unusable)."""
        fit = self._flush(_rows(book, np.array([i]))[0])
        assert fit is not None
        if not (math.isfinite(fit[0]) and math.isfinite(fit[1])):
            raise DataError("the decision snapshot has no usable book on the walked side")
        return ImpactParams(fit[0], fit[1])

    def forecast(self, now: ImpactParams, n_slots: int, *, ts_ns: int, period_s: float) -> SlotForecast:
        """Per-slot ``beta, gamma`` and volume for slots ``0..n_slots-1`` from ``ts_ns`` (module docstring)."""
        self._flush()
        step = round(period_s * NS_PER_S)
        k = np.arange(n_slots, dtype=np.float64)
        t = int(ts_ns) + np.arange(n_slots, dtype=np.int64) * step
        rho: dict[str, float] = {}
        dev: dict[str, float] = {}
        paths = []
        for kind, value in (("beta", now.beta), ("gamma", now.gamma)):
            est, f = self._est[kind], self.profile.factor(kind, t)
            rho[kind] = float(est.persistence(period_s)) if est.ready else 1.0
            dev[kind] = est.deviation(value / float(f[0])) if est.ready and n_slots else 0.0
            if est.ready and n_slots:
                path = est.level * f * (1.0 + est.persistence(k * period_s) * dev[kind])
                path[0] = value
            else:
                path = value * f / (f[0] if n_slots else 1.0)
            paths.append(np.asarray(path, dtype=np.float64))
        volume = self._volume(t, ts_ns, period_s, rho, dev)
        return SlotForecast(paths[0], paths[1], volume, now, rho, dev)

    def _volume(self, t: IntArray, ts_ns: int, period_s: float, rho: dict[str, float],
                dev: dict[str, float]) -> FloatArray | None:
        est = self._est["volume"]
        if not est.ready:
            return None
        d = est.last_deviation if est.last_deviation_index is not None else 0.0
        g = (est.last_deviation_index or 0) * self.settings.sample_ns
        s = np.asarray((ts_ns - g) / NS_PER_S + est.lag_s / 2 + (np.arange(t.size) + 0.5) * period_s,
                       dtype=np.float64)
        rho["volume"], dev["volume"] = float(est.persistence(period_s)), float(d)
        shape = period_s * est.level * self.profile.factor("volume", t)
        return np.asarray(shape * (1.0 + est.persistence(s) * d), dtype=np.float64)

    # -------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        """JSON-able state (the profile is not included: pass it again to :meth:`from_state`)."""
        self._flush()
        row = None if self.row is None else [[None if math.isnan(v) else v for v in r] for r in self.row.tolist()]
        return {"kind": "cost_forecast", "version": self.VERSION, "side": self.side,
                "sizes": self.sizes.tolist(), "penalty_ticks": self.penalty_ticks, "tick": self.tick,
                "estimators": {k: e.state() for k, e in self._est.items()}, "last_grid": self.last_grid,
                "last_event_ts": self.last_event_ts, "row": row, "row_ts": self.row_ts,
                "cum_traded": self.cum_traded, "tail_traded": self.tail_traded, "cum_at": [[k, v] for k, v in sorted(self.cum_at.items())]}

    @classmethod
    def from_state(cls, state: dict[str, Any], *, profile: IntradayProfile | None = None) -> CostForecaster:
        """Rebuild from :meth:`state`; raises ``DataError`` for another kind or version."""
        if state.get("kind") != "cost_forecast" or state.get("version") != cls.VERSION:
            raise DataError(f"not a cost_forecast v{cls.VERSION} state")
        est = {k: ReversionEstimator.from_state(s) for k, s in state["estimators"].items()}
        fc = cls(state["side"], np.asarray(state["sizes"], dtype=np.float64), est["beta"].settings,
                 profile=profile, penalty_ticks=state["penalty_ticks"], tick=state["tick"])
        fc._est = est
        fc.last_grid, fc.last_event_ts = state["last_grid"], state["last_event_ts"]
        fc._row = None if state["row"] is None else np.array(
            [[math.nan if v is None else v for v in r] for r in state["row"]], dtype=np.float64)
        fc.row_ts, fc.cum_traded = state["row_ts"], float(state["cum_traded"])
        fc.tail_traded = float(state["tail_traded"])
        fc.cum_at = {int(k): float(v) for k, v in state["cum_at"]}
        return fc


def _rows(book: BookLike, i: IntArray) -> FloatArray:
    """Rows ``i`` of the book as (k, 4, L): bid_px, bid_sz, ask_px, ask_sz."""
    return np.stack([book.bid_px[i], book.bid_sz[i], book.ask_px[i], book.ask_sz[i]], axis=1).astype(np.float64)
