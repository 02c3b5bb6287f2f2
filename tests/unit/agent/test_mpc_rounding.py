"""LotRounder: the current slot rounded to the lot size with the residual carried forward."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.mpc.rounding import LotRounder


def test_round_fractional_plan_carries_residual_into_next_periods() -> None:
    r = LotRounder(lot_size=100)
    sent = [r.round(planned, remaining=10_000) for planned in [140.0] * 10]
    assert all(q % 100 == 0 for q in sent)
    assert sum(sent) == pytest.approx(1400, abs=100)  # carry keeps the total on plan
    assert sent[:3] == [100, 200, 100]


def test_round_never_exceeds_remaining_quantity() -> None:
    r = LotRounder(lot_size=100)
    assert r.round(2000.0, remaining=1250.0) == 1250.0  # all of it, odd tail included
    r = LotRounder(lot_size=100)
    assert r.round(2000.0, remaining=5000.0) == 2000.0
    assert r.round(900.0, remaining=450.0) == 450.0


def test_round_odd_tail_below_one_lot_is_sent_to_finish_the_order() -> None:
    r = LotRounder(lot_size=100)
    assert r.round(1050.0, remaining=1050.0) == 1050.0
    assert r.round(30.0, remaining=30.0) == 30.0


def test_round_small_plan_against_odd_tail_waits() -> None:
    r = LotRounder(lot_size=100)
    assert r.round(5.0, remaining=30.0) == 0.0
    assert r.carry == pytest.approx(5.0)


def test_round_negative_or_zero_plan_sends_nothing_and_carry_is_bounded() -> None:
    r = LotRounder(lot_size=10)
    for _ in range(50):
        assert r.round(-3.0, remaining=1000) == 0.0
    assert -10 <= r.carry <= 10


def test_round_state_roundtrip_resumes_identically() -> None:
    a = LotRounder(lot_size=100)
    a.round(140.0, 5000.0)
    b = LotRounder.from_state(a.state())
    assert [a.round(140.0, 5000.0) for _ in range(5)] == [b.round(140.0, 5000.0) for _ in range(5)]


def test_lot_rounder_non_positive_lot_is_rejected() -> None:
    with pytest.raises(ValueError, match="lot_size"):
        LotRounder(lot_size=0)


@settings(max_examples=200, deadline=None)
@given(lot=st.sampled_from([1.0, 10.0, 100.0]),
       plans=st.lists(st.floats(0, 5000, allow_nan=False), min_size=1, max_size=40),
       total=st.floats(1, 50_000, allow_nan=False))
def test_round_any_sequence_is_lot_multiple_or_final_tail_and_never_overfills(
        lot: float, plans: list[float], total: float) -> None:
    r = LotRounder(lot_size=lot)
    remaining = total
    for p in plans:
        q = r.round(p, remaining)
        assert 0 <= q <= remaining + 1e-9
        assert np.isclose(q / lot, round(q / lot)) or np.isclose(q, remaining)
        remaining -= q
    assert remaining >= -1e-9
