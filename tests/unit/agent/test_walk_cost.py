"""The decision path's scalar walk and fit give the same bits as the vectorised ones.

A decision walks one snapshot over its parent's grid; :func:`walk_cost` and
:meth:`FitGrid.fit` do that in scalar arithmetic (numpy's fixed cost per call
was most of a decision's forecast time). The replay results depend on these
numbers, so the two paths must agree exactly, not approximately, on any book:
gaps, empty or crossed sides, NaN prices, a single level, sizes inside and
beyond the visible depth.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.errors import DataError
from agent.core.forecast.cost_forecast import FitGrid, ParentForecaster
from agent.core.forecast.sampler import BookSampler, book_rows
from agent.core.impact.curves import cost_curves, default_sizes, walk_cost

prices = st.one_of(st.floats(0.5, 200.0, allow_nan=False), st.just(float("nan")))
sizes_ = st.one_of(st.floats(0.0, 5_000.0, allow_nan=False), st.just(0.0))


@st.composite
def rows(draw: st.DrawFn) -> np.ndarray:
    """One (4, L) row: prices ordered away from a mid (or not), holes, NaN, zero sizes."""
    levels = draw(st.integers(1, 10))
    mid = draw(st.floats(1.0, 100.0))
    tick = draw(st.sampled_from([0.01, 0.05, 0.25]))
    ordered = draw(st.booleans())
    if ordered:
        steps = np.cumsum(draw(st.lists(st.integers(1, 4), min_size=levels, max_size=levels))) * tick
        bid_px, ask_px = mid - steps, mid + steps
    else:
        bid_px = np.array(draw(st.lists(prices, min_size=levels, max_size=levels)))
        ask_px = np.array(draw(st.lists(prices, min_size=levels, max_size=levels)))
    bid_sz = np.array(draw(st.lists(sizes_, min_size=levels, max_size=levels)))
    ask_sz = np.array(draw(st.lists(sizes_, min_size=levels, max_size=levels)))
    return np.stack([bid_px, bid_sz, ask_px, ask_sz]).astype(np.float64)


grids = st.lists(st.floats(0.0, 20_000.0, allow_nan=False), min_size=1, max_size=25).map(
    lambda v: np.sort(np.asarray(v, dtype=np.float64)))


@settings(max_examples=400, deadline=None)
@given(row=rows(), sizes=grids, side=st.sampled_from(["buy", "sell"]), pen=st.floats(0.0, 1.0))
def test_one_row_walk_is_the_vectorised_walk_bit_for_bit(row: np.ndarray, sizes: np.ndarray, side: str,
                                                          pen: float) -> None:
    ref = cost_curves(row[None, 0], row[None, 1], row[None, 2], row[None, 3], sizes, side=side,  # type: ignore[arg-type]
                      penalty_per_share=pen).cost
    got = walk_cost(row[None], sizes, side=side, penalty=pen)  # type: ignore[arg-type]
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)  # NaN where NaN, every other value the same bits


@settings(max_examples=400, deadline=None)
@given(cost=st.lists(st.one_of(st.floats(-1e4, 1e6, allow_nan=False), st.just(float("nan"))),
                     min_size=20, max_size=20),
       top=st.floats(1.0, 50_000.0), points=st.integers(2, 20))
def test_one_row_fit_is_the_vectorised_fit_bit_for_bit(cost: list[float], top: float, points: int) -> None:
    grid = FitGrid(np.arange(1, points + 1) * (top / points))
    c = np.asarray(cost[:points], dtype=np.float64)[None]
    a, b = (c @ grid.xx)[:, 0], (c @ grid.xx)[:, 1]
    ref = grid._fit_many(a, b)
    got = grid.fit(c)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_many_rows_fit_row_by_row_as_one_at_a_time() -> None:
    """A batch and the same rows one by one agree (the estimators see the same numbers either way)."""
    rng = np.random.default_rng(3)
    grid = FitGrid(np.arange(1, 21) * 25.0)
    c = rng.normal(0, 5, (50, 20)) + np.arange(1, 21) * rng.uniform(0.0, 0.05, (50, 1))
    beta, gamma = grid.fit(c)
    one = [grid.fit(c[i:i + 1]) for i in range(50)]
    np.testing.assert_allclose(beta, [o[0][0] for o in one], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gamma, [o[1][0] for o in one], rtol=1e-12, atol=1e-15)


@settings(max_examples=150, deadline=None)
@given(book=st.lists(rows(), min_size=2, max_size=12), side=st.sampled_from(["buy", "sell"]))
def test_a_few_rows_walk_is_the_vectorised_walk_bit_for_bit(book: list[np.ndarray], side: str) -> None:
    """Row by row below ``SCALAR_WALK_ROWS``, vectorised above: the same cost matrix either way."""
    levels = min(r.shape[1] for r in book)
    r = np.stack([b[:, :levels] for b in book])
    sizes = np.array([1.0, 50.0, 400.0, 2_500.0, 9_000.0])
    ref = cost_curves(r[:, 0], r[:, 1], r[:, 2], r[:, 3], sizes, side=side,  # type: ignore[arg-type]
                      penalty_per_share=0.03).cost
    np.testing.assert_array_equal(walk_cost(r, sizes, side=side, penalty=0.03), ref)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(row=rows(), side=st.sampled_from(["buy", "sell"]), slice_=st.floats(1.0, 5_000.0))
def test_decision_row_read_from_the_book_fits_as_the_catch_up_path(row: np.ndarray, side: str,
                                                                    slice_: float) -> None:
    """``ParentForecaster.now`` with nothing new sampled walks the row's levels straight from the
    book (no (1, 4, L) array); the same bits as the catch-up path's walk and fit of that row."""
    book = SimpleNamespace(bid_px=row[None, 0], bid_sz=row[None, 1], ask_px=row[None, 2], ask_sz=row[None, 3])
    sizes = default_sizes(slice_, 1)
    fast, ref = ParentForecaster(side, sizes), ParentForecaster(side, sizes)  # type: ignore[arg-type]
    sampler = BookSampler()
    assert not sampler.has_rows_after(fast.consumed)
    expected = ref.catch_up(sampler, book_rows(book, np.array([0]))[0])  # type: ignore[arg-type]
    assert expected is not None
    if not (np.isfinite(expected[0]) and np.isfinite(expected[1])):
        with pytest.raises(DataError):
            fast.now(sampler, book, 0)  # type: ignore[arg-type]
        return
    got = fast.now(sampler, book, 0)  # type: ignore[arg-type]
    assert (got.beta, got.gamma) == expected  # exact
