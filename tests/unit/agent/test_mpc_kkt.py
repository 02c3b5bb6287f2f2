"""agent.core.mpc.oracle: exact separable solution, even split, model cost, fallback plans."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.mpc.oracle import even_split, fallback_schedule, model_cost, solve_separable_exact


def test_exact_equal_coefficients_no_caps_is_the_even_split() -> None:
    x, s = solve_separable_exact(1000.0, [0.01] * 4, [1e-5] * 4)
    assert np.allclose(x, 250.0) and s == 0.0


def test_exact_kkt_conditions_hold_on_free_slots_and_bounds() -> None:
    rng = np.random.default_rng(1)
    n = 200
    b, g, u = rng.uniform(0, 0.05, n), rng.uniform(1e-6, 1e-4, n), rng.uniform(0, 300, n)
    x, s = solve_separable_exact(20_000.0, b, g, u)
    assert s == 0.0 and x.sum() == pytest.approx(20_000.0, rel=1e-12)
    marg = b + 2 * g * x
    free = (x > 1e-9) & (x < u - 1e-9)
    nu = marg[free].mean()
    assert np.allclose(marg[free], nu, rtol=1e-9)
    assert np.all(marg[x <= 1e-9] >= nu - 1e-12)  # idle slots are dearer at the margin
    assert np.all(marg[x >= u - 1e-9] <= nu + 1e-12)  # saturated slots are cheaper


def test_exact_ties_in_breakpoints_and_caps_equal_to_remaining() -> None:
    x, s = solve_separable_exact(300.0, [0.01, 0.01, 0.01], [1e-5] * 3, [100, 100, 100])
    assert np.allclose(x, 100.0) and s == 0.0
    x, s = solve_separable_exact(500.0, [0.01, 0.02], [1e-5, 1e-5], [100, 150])
    assert np.allclose(x, [100, 150]) and s == pytest.approx(250.0)


@pytest.mark.parametrize(("beta", "gamma", "cap"), [
    ([0.01, np.nan], [1e-5, 1e-5], None), ([0.01, 0.01], [1e-5, 0.0], None),
    ([0.01, 0.01], [1e-5, 1e-5], [1.0, -1.0]), ([0.01], [1e-5, 1e-5], None),
])
def test_exact_invalid_data_raises_value_error(beta: list, gamma: list, cap: list | None) -> None:
    with pytest.raises(ValueError):
        solve_separable_exact(100.0, beta, gamma, cap)


def test_exact_nothing_to_trade_is_zero() -> None:
    x, s = solve_separable_exact(0.0, [0.01] * 3, [1e-5] * 3)
    assert np.all(x == 0) and s == 0.0


@settings(max_examples=200, deadline=None)
@given(caps=st.lists(st.one_of(st.floats(0, 1000), st.just(np.inf)), min_size=1, max_size=30),
       r=st.floats(0, 20_000))
def test_even_split_any_caps_is_level_filling(caps: list[float], r: float) -> None:
    u = np.array(caps)
    x, s = even_split(r, u)
    assert np.all(x >= 0) and np.all(x <= u + 1e-9)
    assert x.sum() + s == pytest.approx(r, rel=1e-9, abs=1e-6)
    if s == 0 and r > 0:
        level = x.max()
        assert np.all((np.isclose(x, level)) | (np.isclose(x, u)))  # below the level: capped


def test_model_cost_impact_plus_risk_on_inventory_after_each_period() -> None:
    x = np.array([100.0, 50.0, 50.0])
    cost = model_cost(x, [0.01] * 3, [1e-4] * 3, remaining=200.0, risk_aversion=2.0, sigma=0.1)
    impact = 0.01 * 200 + 1e-4 * (100**2 + 50**2 + 50**2)
    assert cost == pytest.approx(impact + 2.0 * 0.01 * (100**2 + 50**2 + 0))


def test_fallback_schedule_order_exact_then_shifted_then_even() -> None:
    b, g, u = np.full(4, 0.01), np.array([1e-5, 2e-5, 3e-5, 4e-5]), np.full(4, 400.0)
    x, _, name = fallback_schedule(1000.0, b, g, u, None, exact_ok=True)
    assert name == "exact" and np.allclose(x, solve_separable_exact(1000.0, b, g, u)[0])
    prev = np.array([999.0, 500.0, 300.0, 100.0, 100.0])
    x, s, name = fallback_schedule(1000.0, b, g, u, prev, exact_ok=False)
    assert name == "fallback-shifted" and s == 0.0
    assert np.allclose(x, [400.0, 333.3333333, 133.3333333, 133.3333333])
    x, s, name = fallback_schedule(1000.0, b, g, np.array([400, np.nan, 400, 400]), None,
                                   exact_ok=False)
    assert name == "fallback-even" and x[1] == 0.0 and np.allclose(x[[0, 2, 3]], 1000 / 3)
