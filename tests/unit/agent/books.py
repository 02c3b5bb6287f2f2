"""Hand-made books for engine and risk tests."""

from __future__ import annotations

import numpy as np

from feeds.book import BookBatch

NS = 1_000_000_000
T0 = 1_743_687_000 * NS  # 2025-04-03 13:30:00 UTC


def ladder_book(
    ts: np.ndarray,
    *,
    mid: float | np.ndarray = 50.0,
    tick: float = 0.01,
    half_spread_ticks: int = 1,
    depth: float = 500.0,
    levels: int = 10,
    trade_every: int = 0,
    trade_size: float = 100.0,
    symbol: str = "TEST",
) -> BookBatch:
    """A regular book: levels one tick apart, ``depth * (1 + i)`` shares at level i.

    Every ``trade_every``-th row is a trade of ``trade_size`` (0: no trades).
    """
    ts = np.asarray(ts, dtype=np.int64)
    n = len(ts)
    mids = np.broadcast_to(np.asarray(mid, dtype=float), (n,))
    steps = np.arange(levels) * tick + half_spread_ticks * tick
    bid_px = np.round(mids[:, None] - steps[None, :], 6)
    ask_px = np.round(mids[:, None] + steps[None, :], 6)
    sz = np.broadcast_to(depth * (1 + np.arange(levels, dtype=float)), (n, levels)).copy()
    action = np.full(n, "A")
    price = bid_px[:, 0].copy()
    size = np.full(n, 100.0)
    if trade_every:
        t = np.arange(n) % trade_every == 0
        action[t] = "T"
        price[t] = ask_px[t, 0]
        size[t] = trade_size
    return BookBatch(
        ts_event=ts, symbol=np.full(n, symbol), action=action, side=np.full(n, "A"),
        price=price, size=size, bid_px=bid_px, bid_sz=sz.copy(), ask_px=ask_px, ask_sz=sz.copy(),
    )
