"""The engine's forecast setting: ``reverting`` (slot 0 from the decision row's own walk) vs ``ewma``."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from agent.core.engine import ExecutionEngine
from agent.core.forecast.profile import IntradayProfile
from agent.core.impact.curves import cost_curves, default_sizes
from agent.core.impact.fit import fit_quadratic
from agent.core.model import Fill, ParentOrder
from agent.core.policy import DecisionRecord, EngineSettings
from feeds.book import BookBatch
from tests.unit.agent.books import NS, T0, ladder_book

PERIOD = 60 * NS


def _setup(minutes: int = 40) -> tuple[ParentOrder, BookBatch]:
    """A parent over the last 10 minutes of a book whose spread changes every 10 s (1..4 ticks)."""
    rng = np.random.default_rng(3)
    ts = T0 + np.arange(minutes * 60) * NS
    half = np.repeat(rng.integers(1, 5, size=minutes * 6), 10)
    parts = [ladder_book(ts[i:i + 10], half_spread_ticks=int(half[i]), trade_every=5, trade_size=300.0)
             for i in range(0, ts.size, 10)]
    book = BookBatch.concat(parts)
    start = T0 + (minutes - 10) * PERIOD
    return ParentOrder("P1", "TEST", "buy", 3000.0, start, start + 10 * PERIOD, 60.0), book


def _run(engine: ExecutionEngine, parent: ParentOrder, book: BookBatch) -> list[DecisionRecord]:
    engine.submit(parent)
    cuts = np.searchsorted(book.ts_event, [parent.period_start_ns(k) for k in range(parent.n_periods)])
    decisions: list[DecisionRecord] = []
    for a, b in itertools.pairwise([0, *cuts.tolist(), len(book)]):
        if b > a:
            res = engine.on_book(book[a:b])
            decisions += res.decisions
            for c in res.children:
                engine.on_fill(Fill(f"{c.child_order_id}:f", c.child_order_id, c.parent_id, c.quantity,
                                    c.limit_price, c.ts_event))
    return decisions


def test_reverting_prices_slot_zero_from_the_decision_rows_own_book() -> None:
    parent, book = _setup()
    engine = ExecutionEngine(EngineSettings(forecast="reverting"))
    decisions = _run(engine, parent, book)
    sizes = default_sizes(parent.quantity, parent.n_periods, multiple=engine.settings.size_grid_multiple)
    assert len(decisions) == 10
    for d in decisions:
        i = int(np.searchsorted(book.ts_event, d.ts_ns))
        row = cost_curves(book.bid_px[i:i + 1], book.bid_sz[i:i + 1], book.ask_px[i:i + 1],
                          book.ask_sz[i:i + 1], sizes, side="buy").cost[0]
        assert d.beta == pytest.approx(fit_quadratic(sizes, row).beta, rel=1e-9)
    assert engine.remaining("P1") == pytest.approx(0.0, abs=1.0)
    assert engine.market("TEST").sampler is not None


def test_reverting_trades_more_when_the_spread_is_tight_ewma_does_not_look() -> None:
    parent, book = _setup()
    out: dict[str, list[DecisionRecord]] = {}
    for mode in ("reverting", "ewma"):
        out[mode] = _run(ExecutionEngine(EngineSettings(forecast=mode)), parent, book)  # type: ignore[arg-type]
    rev = out["reverting"][:-1]  # the last period must take whatever is left
    tight = [d.quantity for d in rev if d.beta < np.median([e.beta for e in rev])]
    wide = [d.quantity for d in rev if d.beta > np.median([e.beta for e in rev])]
    assert tight and wide and np.mean(tight) > 1.5 * np.mean(wide)
    ewma = [d.quantity for d in out["ewma"]]
    assert max(ewma) - min(ewma) <= 0.25 * parent.quantity / parent.n_periods  # close to even
    assert ExecutionEngine(EngineSettings(forecast="ewma")).market("TEST").sampler is None


def test_the_crash_record_carries_the_parents_forecaster_and_the_profile_is_reattached() -> None:
    parent, book = _setup()
    profile = IntradayProfile.flat()
    engine = ExecutionEngine(EngineSettings(), profile=profile)
    _run(engine, parent, book[: 35 * 60])
    record = json.loads(json.dumps(engine.snapshot("P1"), allow_nan=False))
    assert record["forecaster"]["kind"] == "parent_forecast"
    assert record["symbol"]["sampler"]["kind"] == "book_sampler"
    restarted = ExecutionEngine(EngineSettings(), profile=profile)
    restarted.restore(record)
    got, want = restarted.parents["P1"].forecaster, engine.parents["P1"].forecaster
    assert got is not None and want is not None
    assert got.state() == want.state() and got.profile is profile
