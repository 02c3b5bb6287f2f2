"""What an order-book file holds: events, time range, trades, spread, depth, rejections.

``inspect_paths`` streams the files (bounded memory apart from two float64
values per event kept for the exact medians) and returns::

    {"files": [...],
     "symbols": {SYM: {"events", "first_ts", "last_ts", "trades", "trade_volume",
                       "median_spread_bps", "median_depth_shares_10_levels",
                       "rejected": {reason: count}}}}

over the *valid* rows (rejected rows are only counted). Definitions, per row
with both sides of the top of book present:

    spread_bps = (ask_px_0 - bid_px_0) / mid * 1e4,   mid = (ask_px_0 + bid_px_0) / 2
    depth      = sum over the first 10 levels of (bid_sz + ask_sz)

Timestamps are ISO-8601 UTC with nanoseconds (``2025-04-03T13:30:00.125395235Z``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from feeds.book import merge_rejections
from feeds.files.readers import iter_clean

__all__ = ["format_ts", "inspect_paths", "render_text"]


def format_ts(ns: int | None) -> str | None:
    """int ns since the epoch -> ``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`` (None stays None)."""
    if ns is None:
        return None
    return f"{np.datetime_as_string(np.datetime64(int(ns), 'ns'), unit='ns')}Z"


@dataclass
class _Acc:
    events: int = 0
    first: int | None = None
    last: int | None = None
    trades: int = 0
    volume: float = 0.0
    spreads: list[npt.NDArray[np.float64]] = field(default_factory=list)
    depths: list[npt.NDArray[np.float64]] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        spread = np.concatenate(self.spreads) if self.spreads else np.zeros(0)
        depth = np.concatenate(self.depths) if self.depths else np.zeros(0)
        return {
            "events": self.events,
            "first_ts": format_ts(self.first),
            "last_ts": format_ts(self.last),
            "trades": self.trades,
            "trade_volume": int(self.volume) if float(self.volume).is_integer() else self.volume,
            "median_spread_bps": float(np.median(spread)) if spread.size else None,
            "median_depth_shares_10_levels": float(np.median(depth)) if depth.size else None,
            "rejected": dict(sorted(self.rejected.items())),
        }


def inspect_paths(paths: Sequence[str], fmt: str = "auto", *, chunk_rows: int = 250_000) -> dict[str, Any]:
    """Per-symbol summary of the valid rows of ``paths`` (see the module docstring)."""
    files: list[str] = []
    acc: dict[str, _Acc] = {}
    for chunk in iter_clean(list(paths), fmt, chunk_rows=chunk_rows, files=files):
        for sym, counts in chunk.rejected_by_symbol.items():
            merge_rejections(acc.setdefault(sym, _Acc()).rejected, counts)
        b = chunk.batch
        if not len(b):
            continue
        for sym in b.symbols():
            s = b.for_symbol(sym) if len(b.symbols()) > 1 else b
            a = acc.setdefault(sym, _Acc())
            a.events += len(s)
            lo, hi = int(s.ts_event.min()), int(s.ts_event.max())
            a.first = lo if a.first is None else min(a.first, lo)
            a.last = hi if a.last is None else max(a.last, hi)
            trade = s.is_trade()
            a.trades += int(trade.sum())
            a.volume += float(s.size[trade].sum())
            both = (s.bid_sz[:, 0] > 0) & (s.ask_sz[:, 0] > 0)
            bid, ask = s.bid_px[both, 0], s.ask_px[both, 0]
            a.spreads.append((ask - bid) / (0.5 * (ask + bid)) * 1e4)
            a.depths.append(s.bid_sz[:, :10].sum(axis=1) + s.ask_sz[:, :10].sum(axis=1))
    return {"files": files, "symbols": {sym: acc[sym].summary() for sym in sorted(acc)}}


def render_text(summary: dict[str, Any]) -> str:
    """A readable per-symbol table of ``inspect_paths`` output."""
    lines = [f"files: {', '.join(summary.get('files', [])) or '(none)'}"]
    syms: dict[str, dict[str, Any]] = summary.get("symbols", {})
    if not syms:
        lines.append("no valid rows")
        return "\n".join(lines)
    header = ["symbol", "events", "first_ts", "last_ts", "trades", "volume", "spread_bps", "depth_10", "rejected"]
    rows = []
    for sym, s in syms.items():
        rej = ", ".join(f"{k}={v}" for k, v in s["rejected"].items()) or "-"
        spread = s["median_spread_bps"]
        depth = s["median_depth_shares_10_levels"]
        rows.append([
            sym, f"{s['events']:,}", s["first_ts"] or "-", s["last_ts"] or "-", f"{s['trades']:,}",
            f"{s['trade_volume']:,}", "-" if spread is None else f"{spread:.2f}",
            "-" if depth is None else f"{depth:,.0f}", rej,
        ])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    return "\n".join(lines)
