"""Pre-trade checks: refusal reasons, quantity clamps, IOC limit prices."""

from __future__ import annotations

import numpy as np
import pytest

from agent.core import risk
from agent.core.risk import RiskLimits

LIM = RiskLimits(max_snapshot_age_ms=1000.0, limit_slippage_bps=10.0)
ASK_PX = np.array([10.00, 10.01, 10.02, np.nan])
ASK_SZ = np.array([100.0, 200.0, 300.0, 0.0])


@pytest.mark.parametrize(
    ("bid", "bsz", "ask", "asz", "age", "reason"),
    [
        (9.99, 100, 10.0, 100, 0.0, None),
        (10.01, 100, 10.0, 100, 0.0, risk.CROSSED_BOOK),
        (10.0, 100, 10.0, 100, 0.0, risk.LOCKED_BOOK),
        (np.nan, 0, 10.0, 100, 0.0, risk.EMPTY_SIDE),
        (9.99, 100, 10.0, 0, 0.0, risk.EMPTY_SIDE),
        (9.99, 100, 10.0, 100, 1500.0, risk.STALE_BOOK),
    ],
)
def test_book_reject_reason_names_each_refusal(bid, bsz, ask, asz, age, reason) -> None:  # type: ignore[no-untyped-def]
    assert risk.book_reject_reason(bid, bsz, ask, asz, age, LIM) == reason


def test_clamp_never_exceeds_remaining_cap_or_max_child() -> None:
    lim = RiskLimits(max_child_shares=500.0)
    assert risk.clamp_child_quantity(800.0, 1000.0, 700.0, lim) == 500.0
    assert risk.clamp_child_quantity(800.0, 300.0, 700.0, lim) == 300.0
    assert risk.clamp_child_quantity(800.0, 1000.0, 200.0, lim) == 200.0
    assert risk.clamp_child_quantity(-5.0, 1000.0, 200.0, lim) == 0.0


def test_limit_price_covers_the_levels_the_quantity_needs_plus_slippage() -> None:
    assert risk.child_limit_price("buy", ASK_PX, ASK_SZ, 100.0, LIM) == pytest.approx(10.00 * 1.001)
    assert risk.child_limit_price("buy", ASK_PX, ASK_SZ, 250.0, LIM) == pytest.approx(10.01 * 1.001)
    # deeper than the visible book: the worst visible level
    assert risk.child_limit_price("buy", ASK_PX, ASK_SZ, 5000.0, LIM) == pytest.approx(10.02 * 1.001)
    bid_px = np.array([9.99, 9.98])
    bid_sz = np.array([100.0, 100.0])
    assert risk.child_limit_price("sell", bid_px, bid_sz, 150.0, LIM) == pytest.approx(9.98 * 0.999)


def test_limit_price_is_bounded_by_the_parent_limit() -> None:
    assert risk.child_limit_price("buy", ASK_PX, ASK_SZ, 250.0, LIM, parent_limit=10.005) == 10.005
    assert risk.child_limit_price("buy", ASK_PX, ASK_SZ, 250.0, LIM, parent_limit=9.99) is None
    bid_px = np.array([9.99, 9.98])
    assert risk.child_limit_price("sell", bid_px, np.array([1.0, 1.0]), 2.0, LIM, parent_limit=10.0) is None


def test_fillable_within_counts_visible_depth_up_to_the_limit() -> None:
    assert risk.fillable_within("buy", ASK_PX, ASK_SZ, 10.01) == 300.0
    assert risk.fillable_within("buy", ASK_PX, ASK_SZ, 9.0) == 0.0
