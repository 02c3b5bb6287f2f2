"""Transaction-cost analysis of one strategy run (and paired comparisons across windows).

Conventions: ``s = +1`` for a buy, ``-1`` for a sell; positive costs lose money.
``Q`` parent quantity, fills ``(q_i, p_i)``, ``F = sum q_i``, arrival mid
``m_0`` (first tradable book at or after the start), end mid ``m_T`` (last
tradable book before the end). Every cost in bps is ``1e4 * dollars / (Q m_0)``
(bps of the arrival notional), so the components add up in bps as in dollars.

- Implementation shortfall vs arrival, with the unfilled rest priced at the
  end mid (never hidden)::

      IS$ = s (sum q_i p_i - F m_0) + s (Q - F)(m_T - m_0) + fees

- Split, with ``m_i`` and ``b_i`` the mid and the touch (best ask for a buy,
  best bid for a sell) of the book the fill's child order was *decided* on
  (its ``ts_event``; a fill whose child is unknown uses its own book)::

      spread      = s sum q_i (b_i - m_i)             half-spread paid
      impact      = s sum q_i (p_i - b_i)             beyond the touch: depth walked,
                                                      own depletion, moves during latency
      timing      = s sum q_i (m_i - m_0)             mid drift from arrival to each decision
      opportunity = s (Q - F)(m_T - m_0)              unfilled shares at the end mid

  so ``IS$ = spread + impact + timing + opportunity + fees`` (an identity:
  the ``m_i`` and ``b_i`` telescope). ``controllable = spread + impact = s
  sum q_i (p_i - m_i)`` is the cost the schedule controls (how much, how fast,
  how deep); timing is the market's drift while the order works, the same noise
  for every schedule of the window, and dominates total shortfall.
- vs interval VWAP (market trades in ``[start, end)``) on the filled part:
  ``1e4 s (pbar - VWAP) / VWAP`` with ``pbar`` our average price.
- Realised participation per period: our filled shares / market traded
  shares in that period (periods without market trades are not in the max;
  fills in such periods are counted in ``periods_without_market_volume``);
  ``participation`` is the same over the whole window. On a thin stock the
  per-period max is dominated by minutes with a single small print, so
  ``max_participation_5min`` also gives the max over every run of
  consecutive periods spanning 5 minutes (``k = max(1, round(300 / P))``
  periods; the whole window when shorter): ``max_w sum_w ours / sum_w market``
  over windows with market volume, the measure a participation limit is
  usually checked on.
- Paired comparison of two strategies over windows: ``d_w = a_w - b_w``,
  mean, median, seeded percentile-bootstrap 95% interval of the mean, and the
  number of windows with ``d_w < 0`` (:func:`paired_comparison`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.core.model import FloatArray, IntArray, sign
from feeds.book import BookBatch
from replay.runner import StrategyRun

CONTRACT_FIELDS: tuple[str, ...] = (
    "filled_quantity", "average_price", "shortfall_bps", "shortfall_dollars", "child_orders",
    "max_participation", "solve_us_p50", "solve_us_p99", "fallbacks",
)
COMPONENTS: tuple[str, ...] = ("spread", "impact", "timing", "opportunity", "fees")
"""The parts of implementation shortfall, in the order they add up (module docstring)."""
CONTROLLABLE: tuple[str, ...] = ("spread", "impact")


@dataclass(frozen=True)
class Market:
    """Per-row arrays of one symbol's day used by the TCA (built once per book)."""

    ts: IntArray
    mid: FloatArray
    bid: FloatArray
    ask: FloatArray
    tradable: np.ndarray
    trade_ts: IntArray
    trade_px: FloatArray
    trade_sz: FloatArray
    next_tradable: IntArray
    """Row index of the first tradable row at or after each row (``len`` when none)."""

    @classmethod
    def from_book(cls, book: BookBatch) -> Market:
        bid, ask = book.bid_px[:, 0], book.ask_px[:, 0]
        ok = (book.bid_sz[:, 0] > 0) & (book.ask_sz[:, 0] > 0) & (bid < ask)
        t = book.action == "T"
        n = len(ok)
        idx = np.where(ok, np.arange(n), n)
        nxt = np.minimum.accumulate(idx[::-1])[::-1] if n else np.zeros(0, np.int64)
        return cls(book.ts_event, 0.5 * (bid + ask), bid, ask, ok, book.ts_event[t],
                   book.price[t], book.size[t], np.append(nxt, n).astype(np.int64))

    def tradable_rows_at(self, ts_ns: IntArray) -> IntArray:
        """First tradable row at or after each time (the book a decision at that time saw).

        Falls back to the last tradable row before when nothing tradable follows;
        -1 when the day has no tradable row at all.
        """
        nxt = self.next_tradable[np.searchsorted(self.ts, ts_ns, side="left")]
        last = np.flatnonzero(self.tradable)
        fallback = int(last[-1]) if last.size else -1
        return np.where(nxt < len(self.ts), nxt, fallback).astype(np.int64)

    def mid_at_or_after(self, ts_ns: int) -> float:
        """Mid of the first tradable row at or after ``ts_ns`` (else the last tradable before)."""
        i = int(np.searchsorted(self.ts, ts_ns, side="left"))
        after = np.flatnonzero(self.tradable[i:])
        if after.size:
            return float(self.mid[i + after[0]])
        return self.mid_before(ts_ns)

    def mid_before(self, ts_ns: int) -> float:
        """Mid of the last tradable row strictly before ``ts_ns`` (NaN when none)."""
        i = int(np.searchsorted(self.ts, ts_ns, side="left"))
        before = np.flatnonzero(self.tradable[:i])
        return float(self.mid[before[-1]]) if before.size else float("nan")

    def interval_vwap(self, start_ns: int, end_ns: int) -> tuple[float | None, float]:
        """(VWAP, volume) of market trades in ``[start, end)``; VWAP None without trades."""
        a, b = np.searchsorted(self.trade_ts, [start_ns, end_ns], side="left")
        vol = float(self.trade_sz[a:b].sum())
        if vol <= 0:
            return None, 0.0
        return float(self.trade_px[a:b] @ self.trade_sz[a:b] / vol), vol

    def volume_per_period(self, start_ns: int, period_ns: int, n: int) -> FloatArray:
        a, b = np.searchsorted(self.trade_ts, [start_ns, start_ns + n * period_ns], side="left")
        k = (self.trade_ts[a:b] - start_ns) // period_ns
        return np.bincount(k, weights=self.trade_sz[a:b], minlength=n)[:n].astype(np.float64)


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def shortfall_split(run: StrategyRun, market: Market, m0: float, mt: float) -> tuple[dict[str, float], float]:
    """Shortfall components in dollars (:data:`COMPONENTS`) and the total computed on its own.

    ``total = s (sum q_i p_i - F m_0) + opportunity + fees``; the components are
    measured against each fill's decision book (module docstring) and add up to
    it up to floating-point rounding.
    """
    p = run.parent
    s = sign(p.side)
    q = np.array([f.quantity for f in run.fills], np.float64)
    px = np.array([f.price for f in run.fills], np.float64)
    decided = {c.child_order_id: c.ts_event for c in run.children}
    dts = np.array([decided.get(f.child_order_id, f.ts_event) for f in run.fills], np.int64)
    rows = market.tradable_rows_at(dts)
    mid = market.mid[rows]
    touch = (market.ask if p.side == "buy" else market.bid)[rows]
    filled = float(q.sum())
    unfilled = max(0.0, p.quantity - filled)
    opportunity = s * unfilled * (mt - m0) if unfilled > 0 else 0.0
    parts = {
        "spread": s * float(q @ (touch - mid)),
        "impact": s * float(q @ (px - touch)),
        "timing": s * float(q @ (mid - m0)),
        "opportunity": opportunity,
        "fees": float(run.fees_dollars),
    }
    total = s * float(q @ px - filled * m0) + opportunity + float(run.fees_dollars)
    return parts, total


def max_rolling_ratio(ours: FloatArray, theirs: FloatArray, k: int) -> float:
    """``max_w sum_w ours / sum_w theirs`` over the runs ``w`` of ``k`` consecutive periods (one run
    of all periods when there are fewer) whose ``theirs`` is positive; 0 when none is."""
    n = len(ours)
    if n == 0:
        return 0.0
    k = max(1, min(int(k), n))
    c_o = np.concatenate(([0.0], np.cumsum(ours)))
    c_t = np.concatenate(([0.0], np.cumsum(theirs)))
    num, den = c_o[k:] - c_o[:-k], c_t[k:] - c_t[:-k]
    has = den > 0
    return float((num[has] / den[has]).max()) if has.any() else 0.0


def analyse(run: StrategyRun, market: Market) -> dict[str, Any]:
    """TCA of one run: the contract fields of DESIGN.md section 6 plus the split (module docstring)."""
    p = run.parent
    q = np.array([f.quantity for f in run.fills], np.float64)
    px = np.array([f.price for f in run.fills], np.float64)
    fts = np.array([f.ts_event for f in run.fills], np.int64)
    filled = float(q.sum())
    m0 = market.mid_at_or_after(p.start_ns)
    mt = market.mid_before(p.end_ns)
    parts, total = shortfall_split(run, market, m0, mt)
    controllable = parts["spread"] + parts["impact"]
    scale = 1e4 / (p.quantity * m0)
    avg = float(q @ px / filled) if filled > 0 else None
    vwap, mkt_vol = market.interval_vwap(p.start_ns, p.end_ns)
    vs_vwap = 1e4 * sign(p.side) * (avg - vwap) / vwap if (avg is not None and vwap) else None
    ours = np.bincount(((fts - p.start_ns) // p.period_ns).clip(0, p.n_periods - 1),
                       weights=q, minlength=p.n_periods) if filled > 0 else np.zeros(p.n_periods)
    theirs = market.volume_per_period(p.start_ns, p.period_ns, p.n_periods)
    ours = np.asarray(ours, np.float64)
    has = theirs > 0
    k5 = max(1, round(300.0 / p.period_s))  # periods in 5 minutes
    solve = [d.plan.solver.solve_us for d in run.decisions
             if d.plan is not None and d.plan.solver.status != "schedule"]
    return {
        "filled_quantity": filled,
        "average_price": avg,
        "shortfall_bps": total * scale,
        "shortfall_dollars": total,
        "child_orders": len(run.children),
        "max_participation": max_rolling_ratio(ours, theirs, 1),
        "max_participation_5min": max_rolling_ratio(ours, theirs, k5),
        "solve_us_p50": _pct(solve, 50),
        "solve_us_p99": _pct(solve, 99),
        "fallbacks": sum(1 for d in run.decisions if d.plan is not None and d.plan.fallback),
        "controllable_bps": controllable * scale,
        "controllable_dollars": controllable,
        "timing_bps": parts["timing"] * scale,
        "timing_dollars": parts["timing"],
        "participation": filled / mkt_vol if mkt_vol > 0 else None,
        "unfilled_quantity": max(0.0, p.quantity - filled),
        "fill_rate": filled / p.quantity,
        "vwap_shortfall_bps": vs_vwap,
        "interval_vwap": vwap,
        "market_volume": mkt_vol,
        "arrival_mid": m0,
        "end_mid": mt,
        "components_dollars": parts,
        "components_bps": {k: v * scale for k, v in parts.items()},
        "periods_without_market_volume": int(((ours > 0) & ~has).sum()),
        "skipped_decisions": sum(1 for d in run.decisions if d.skipped),
        "solves": len(solve),
    }


def aggregate(per_run: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine one strategy's TCA over several windows.

    Means of costs (each component too, so they still add up), quantities
    and prices over windows; medians of the shortfall and the controllable
    cost; ``max_participation`` the max; ``child_orders`` and ``fallbacks`` totals; solve percentiles are
    taken over the windows' percentiles (p50: median of p50s, p99: max of p99s).
    """
    if len(per_run) == 1:
        return dict(per_run[0])

    def mean(key: str) -> float | None:
        v = [r[key] for r in per_run if r[key] is not None]
        return float(np.mean(v)) if v else None

    p50 = [r["solve_us_p50"] for r in per_run if r["solve_us_p50"] is not None]
    p99 = [r["solve_us_p99"] for r in per_run if r["solve_us_p99"] is not None]
    out: dict[str, Any] = {
        "filled_quantity": mean("filled_quantity"),
        "average_price": mean("average_price"),
        "shortfall_bps": mean("shortfall_bps"),
        "shortfall_dollars": mean("shortfall_dollars"),
        "child_orders": int(sum(r["child_orders"] for r in per_run)),
        "max_participation": float(max(r["max_participation"] for r in per_run)),
        "max_participation_5min": float(max(r["max_participation_5min"] for r in per_run)),
        "solve_us_p50": float(np.median(p50)) if p50 else None,
        "solve_us_p99": float(max(p99)) if p99 else None,
        "fallbacks": int(sum(r["fallbacks"] for r in per_run)),
        **{k: mean(k) for k in ("controllable_bps", "controllable_dollars", "timing_bps", "timing_dollars",
                                "unfilled_quantity", "fill_rate", "participation", "vwap_shortfall_bps")},
        "shortfall_bps_median": float(np.median([r["shortfall_bps"] for r in per_run])),
        "controllable_bps_median": float(np.median([r["controllable_bps"] for r in per_run])),
        "components_bps": {k: float(np.mean([r["components_bps"][k] for r in per_run])) for k in COMPONENTS},
        "components_dollars": {k: float(np.mean([r["components_dollars"][k] for r in per_run]))
                               for k in COMPONENTS},
        "windows": len(per_run),
    }
    return out


def paired_comparison(a: list[float], b: list[float], *, seed: int = 20250403,
                      resamples: int = 10_000) -> dict[str, Any]:
    """Paired differences ``d_i = a_i - b_i`` (bps): mean, median, bootstrap 95% interval of the mean.

    The interval is the 2.5/97.5 percentiles of the mean over ``resamples``
    resamples of the windows with replacement (seeded, so reproducible);
    None with fewer than two windows (with few windows the percentile interval
    is too narrow: read it with ``n``). ``a_better`` counts windows with
    ``d < 0``; ``differences_bps`` lists the ``d_i`` in window order.
    """
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = len(d)
    if n == 0:
        return {"n": 0, "mean_bps": None, "median_bps": None, "ci95_bps": None, "a_better": 0,
                "differences_bps": []}
    ci: list[float] | None = None
    if n >= 2:
        rng = np.random.default_rng(seed)
        means = d[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
        lo, hi = np.percentile(means, [2.5, 97.5])
        ci = [float(lo), float(hi)]
    return {"n": n, "mean_bps": float(d.mean()), "median_bps": float(np.median(d)),
            "ci95_bps": ci, "a_better": int((d < 0).sum()), "differences_bps": d.tolist()}


def compare(runs: list[dict[str, Any]], a: str, b: str, *, seed: int = 20250403) -> dict[str, Any]:
    """Paired ``a - b`` over windows (``runs``: per-window ``{"strategies": {name: tca}}``).

    The top-level keys compare total shortfall (``shortfall_bps``, as before);
    ``controllable_bps`` and ``timing_bps`` hold the same comparison on those costs.
    """
    def paired(key: str) -> dict[str, Any]:
        return paired_comparison([r["strategies"][a][key] for r in runs],
                                 [r["strategies"][b][key] for r in runs], seed=seed)

    return {**paired("shortfall_bps"), "controllable_bps": paired("controllable_bps"),
            "timing_bps": paired("timing_bps")}
