"""Pre-trade checks: what the engine must never do (DESIGN.md section 8).

Never send an order on a stale (older than ``max_snapshot_age_ms``), crossed,
locked or one-sided book; never exceed the remaining quantity, the
participation cap or the parent's limit price; a kill switch stops new child
orders. Every refusal has a stable reason string (a metric label).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.core.impact.estimator import walk_levels
from agent.core.model import FloatArray, Side

STALE_BOOK = "stale_book"
CROSSED_BOOK = "crossed_book"
LOCKED_BOOK = "locked_book"
EMPTY_SIDE = "empty_side"
KILL_SWITCH = "kill_switch"
BELOW_LOT = "below_lot"
LIMIT_PRICE = "limit_price"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Hard limits applied to every child order.

    ``limit_slippage_bps`` is added beyond the worst level the child needs on
    the current book, so a small move during the order's latency still fills.
    """

    max_snapshot_age_ms: float = 2_000.0
    max_child_shares: float = float("inf")
    limit_slippage_bps: float = 10.0


def book_reject_reason(
    bid_px: float, bid_sz: float, ask_px: float, ask_sz: float, age_ms: float, limits: RiskLimits
) -> str | None:
    """Why the top of book must not be traded on (None when it is fine)."""
    if not (bid_sz > 0 and ask_sz > 0 and np.isfinite(bid_px) and np.isfinite(ask_px)):
        return EMPTY_SIDE
    if bid_px > ask_px:
        return CROSSED_BOOK
    if bid_px == ask_px:
        return LOCKED_BOOK
    if age_ms > limits.max_snapshot_age_ms:
        return STALE_BOOK
    return None


def clamp_child_quantity(quantity: float, remaining: float, cap: float, limits: RiskLimits) -> float:
    """``min(quantity, remaining, cap, max_child_shares)``, never negative."""
    return float(max(0.0, min(quantity, remaining, cap, limits.max_child_shares)))


def child_limit_price(
    side: Side,
    px: FloatArray,
    sz: FloatArray,
    quantity: float,
    limits: RiskLimits,
    parent_limit: float | None = None,
) -> float | None:
    """IOC limit price for ``quantity`` shares on the current book.

    ``px, sz``: the levels the child consumes (asks for a buy, bids for a
    sell), best first. The limit is the worst level the quantity reaches on the
    visible book (the last visible level when it is not deep enough), moved by
    ``limit_slippage_bps`` away from the mid, then bounded by the parent's
    limit. Returns None when even the best level is beyond the parent limit.
    """
    usable = (sz > 0) & np.isfinite(px)
    if not usable.any():
        return None
    p, s = px[usable], sz[usable]
    reach = int(np.searchsorted(np.cumsum(s), quantity, side="left"))
    worst = float(p[min(reach, len(p) - 1)])
    slip = limits.limit_slippage_bps * 1e-4
    limit = worst * (1 + slip) if side == "buy" else worst * (1 - slip)
    if parent_limit is not None:
        if (side == "buy" and p[0] > parent_limit) or (side == "sell" and p[0] < parent_limit):
            return None
        limit = min(limit, parent_limit) if side == "buy" else max(limit, parent_limit)
    return round(limit, 6)


def fillable_within(side: Side, px: FloatArray, sz: FloatArray, limit: float) -> float:
    """Visible shares available at or better than ``limit`` on one side."""
    filled, _ = walk_levels(px[None, :], sz[None, :], np.inf, limit, buy=side == "buy")
    return float(filled[0])
