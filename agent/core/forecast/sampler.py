r"""One symbol's book and traded volume sampled on a fixed event-time grid, for the reverting forecast.

:class:`BookSampler` belongs to the symbol's market state (one per symbol,
whatever the number of parent orders). On the absolute grid ``t_j = j *
sample_s`` it records, previous tick and chunk-invariant (like the
volatility estimator):

* the last **usable row** (both sides quoted, not crossed) at or before
  ``t_j``: kept for ``history_s`` seconds, so that each parent can walk the
  rows over its own size grid when it next decides
  (:class:`agent.core.forecast.cost_forecast.ParentForecaster`), and a parent
  submitted later still finds the recent history;
* the **traded volume rate** over the lag window ending at ``t_j``,
  ``v_j = (C(t_j) - C(t_j - l)) / l`` with ``C(t)`` the shares traded strictly
  before ``t`` and ``l`` the persistence lag, divided by the profile's volume
  factor and fed to a :class:`agent.core.forecast.reversion.ReversionEstimator`
  (level and persistence of the volume behind the participation caps).

A grid time inside a gap between events longer than ``max_gap_s`` (overnight)
is stale: no row, no volume, and no AR pair across it. Rows are memory only:
:meth:`BookSampler.state` keeps the grid position and the volume estimator,
not the rows (a crash record stays small; after a restore parents keep their
own fitted estimators and new rows accumulate again).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from agent.core.errors import DataError
from agent.core.forecast.profile import IntradayProfile
from agent.core.forecast.reversion import ReversionEstimator, ReversionSettings
from agent.core.model import NS_PER_S, BookLike, FloatArray, IntArray

__all__ = ["BookSampler", "book_rows"]


def book_rows(book: BookLike, i: IntArray) -> FloatArray:
    """Rows ``i`` of the book as (k, 4, L): bid_px, bid_sz, ask_px, ask_sz."""
    return np.stack([book.bid_px[i], book.bid_sz[i], book.ask_px[i], book.ask_sz[i]], axis=1).astype(np.float64)


class BookSampler:
    """Grid samples of one symbol's book and volume (see the module docstring)."""

    VERSION = 1

    def __init__(self, settings: ReversionSettings | None = None, *, profile: IntradayProfile | None = None,
                 history_s: float = 7200.0) -> None:
        self.settings = settings or ReversionSettings()
        self.profile = profile if profile is not None else IntradayProfile.flat()
        self.history_s = float(history_s)
        self.volume = ReversionEstimator(self.settings.for_volume())
        self.last_grid: int | None = None  # last grid time processed, ns
        self.last_event_ts: int | None = None
        self._row: FloatArray | None = None  # last usable row (4, L) ...
        self._row_src: tuple[BookLike, int] | None = None  # ... or where to read it (lazily)
        self.row_ts: int | None = None
        self.cum_traded = 0.0  # shares traded, all events seen
        self.tail_traded = 0.0  # ... of which at exactly last_event_ts (a later grid time may equal it)
        self.cum_at: dict[int, float] = {}  # grid index -> shares traded before it (the last m)
        self._store: deque[tuple[IntArray, FloatArray]] = deque()  # (grid indices, rows (k, 4, L))

    @property
    def row(self) -> FloatArray | None:
        """The last usable row seen, (4, L) (None before one)."""
        if self._row is None and self._row_src is not None:
            book, i = self._row_src
            self._row, self._row_src = book_rows(book, np.array([i]))[0], None
        return self._row

    def has_rows_after(self, index: int | None) -> bool:
        """True when :meth:`rows_after` would return a sample (no array built)."""
        return bool(self._store) and (index is None or int(self._store[-1][0][-1]) > index)

    def rows_after(self, index: int | None) -> tuple[IntArray, FloatArray]:
        """Stored samples with grid index > ``index`` (all stored when None): (indices, rows)."""
        parts: list[tuple[IntArray, FloatArray]] = []
        for i, r in reversed(self._store):  # newest first: a parent usually wants the last few
            if index is not None and i[-1] <= index:
                break
            parts.append((i, r))
        parts.reverse()
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, 4, 0))
        idx, rows = np.concatenate([i for i, _ in parts]), np.concatenate([r for _, r in parts])
        keep = idx > index if index is not None else np.ones(idx.size, dtype=bool)
        return idx[keep], rows[keep]

    # ------------------------------------------------------------ updates
    def update(self, book: BookLike) -> None:
        """Add a time-ordered batch of the symbol's snapshots."""
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

    def _grid(self, first_ts: int, last_ts: int) -> IntArray:
        """Grid times not yet processed and strictly before ``last_ts`` (later rows cannot change them)."""
        step = self.settings.sample_ns
        first = self.last_grid + step if self.last_grid is not None else -(-first_ts // step) * step
        if first >= last_ts:
            return np.zeros(0, np.int64)
        return np.asarray(first + np.arange((last_ts - 1 - first) // step + 1, dtype=np.int64) * step)

    def _sample(self, grid: IntArray, ts: IntArray, book: BookLike, usable: IntArray,
                t_ts: IntArray, t_sz: FloatArray) -> None:
        """Store the previous usable row and record the lag-window volume at each fresh grid time."""
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
        if sel.size:
            self._store_rows(idx[sel], self._pick(book, usable, upos[sel]))

    def _pick(self, book: BookLike, usable: IntArray, upos: IntArray) -> FloatArray:
        """Rows at ``usable[upos]``, the carried row where ``upos < 0``."""
        old = upos < 0
        carried = self.row  # not None when a grid time precedes the batch's first usable row
        if not usable.size:
            assert carried is not None
            return np.repeat(carried[None], upos.size, axis=0)
        picked = book_rows(book, usable[np.maximum(upos, 0)])
        if old.any():
            picked[old] = carried
        return picked

    def _store_rows(self, idx: IntArray, rows: FloatArray) -> None:
        self._store.append((idx, rows))
        oldest = int(idx[-1]) - round(self.history_s / self.settings.sample_s)  # kept: index > oldest
        while self._store and self._store[0][0][-1] <= oldest:
            self._store.popleft()
        if self._store and self._store[0][0][0] <= oldest:
            first_idx, first_rows = self._store[0]
            keep = first_idx > oldest
            self._store[0] = (first_idx[keep], first_rows[keep])

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
            self.volume.add(j_arr, np.asarray(keep_rate) / factor)

    # -------------------------------------------------------------- reads
    def volume_forecast(self, n_slots: int, *, ts_ns: int, period_s: float) -> tuple[FloatArray, float, float] | None:
        r"""``(V_k, rho(P), d_v)``: shares per period ``P`` for slots ``0..n_slots-1`` from ``ts_ns``.

        .. math:: V_k = P L_v f_v(t_k) (1 + \rho_v(s_k) d_v),
                  \quad s_k = (t - g) + l/2 + (k + 1/2) P

        with ``d_v`` the deviation of the last window ``[g - l, g)`` (window
        centre to slot centre). None before the level has data.
        """
        est = self.volume
        if not est.ready:
            return None
        d = est.last_deviation if est.last_deviation_index is not None else 0.0
        g = (est.last_deviation_index or 0) * self.settings.sample_ns
        t = int(ts_ns) + np.arange(n_slots, dtype=np.int64) * round(period_s * NS_PER_S)
        s = np.asarray((ts_ns - g) / NS_PER_S + est.lag_s / 2 + (np.arange(n_slots) + 0.5) * period_s,
                       dtype=np.float64)
        shape = period_s * est.level * self.profile.factor("volume", t)
        return np.asarray(shape * (1.0 + est.persistence(s) * d), dtype=np.float64), \
            float(est.persistence(period_s)), float(d)

    # -------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        """JSON-able state without the stored rows (the profile is passed again on restore)."""
        row = self.row
        return {"kind": "book_sampler", "version": self.VERSION, "history_s": self.history_s,
                "volume": self.volume.state(), "last_grid": self.last_grid,
                "last_event_ts": self.last_event_ts, "row_ts": self.row_ts,
                "row": None if row is None else [[None if np.isnan(v) else v for v in r] for r in row.tolist()],
                "cum_traded": self.cum_traded, "tail_traded": self.tail_traded,
                "cum_at": [[k, v] for k, v in sorted(self.cum_at.items())]}

    @classmethod
    def from_state(cls, state: dict[str, Any], *, profile: IntradayProfile | None = None) -> BookSampler:
        """Rebuild from :meth:`state` (no stored rows); raises ``DataError`` for another kind or version."""
        if state.get("kind") != "book_sampler" or state.get("version") != cls.VERSION:
            raise DataError(f"not a book_sampler v{cls.VERSION} state")
        vol = ReversionEstimator.from_state(state["volume"])
        s = cls(vol.settings, profile=profile, history_s=float(state["history_s"]))
        s.volume, s.last_grid, s.last_event_ts = vol, state["last_grid"], state["last_event_ts"]
        s.row_ts = state["row_ts"]
        s._row = None if state["row"] is None else np.array(
            [[np.nan if v is None else v for v in r] for r in state["row"]], dtype=np.float64)
        s.cum_traded, s.tail_traded = float(state["cum_traded"]), float(state["tail_traded"])
        s.cum_at = {int(k): float(v) for k, v in state["cum_at"]}
        return s
