"""ExecutionEngine: event-time decisions, fills-driven remaining, pre-trade refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agent.core.engine import EngineSettings, ExecutionEngine
from agent.core.model import ChildOrder, Fill, ParentOrder
from agent.core.parent_state import FillOutcome
from agent.core.risk import RiskLimits
from feeds.book import BookBatch
from tests.unit.agent.books import NS, T0, ladder_book

PERIOD = 60 * NS


def _parent(qty: float = 3000.0, periods: int = 10, **kw: object) -> ParentOrder:
    return ParentOrder("P1", "TEST", "buy", qty, T0, T0 + periods * PERIOD, 60.0, **kw)  # type: ignore[arg-type]


def _book(minutes: int = 10, **kw: object) -> BookBatch:
    ts = T0 + np.arange(minutes * 60) * NS
    return ladder_book(ts, trade_every=5, trade_size=500.0, **kw)  # type: ignore[arg-type]


def _drive(engine: ExecutionEngine, book: BookBatch, parent: ParentOrder, *, fill: bool = True,
           now_offset_ns: int | None = None) -> list[ChildOrder]:
    """Feed one period at a time and fill each child completely at its limit price."""
    cuts = np.searchsorted(book.ts_event, [parent.period_start_ns(k) for k in range(parent.n_periods + 1)])
    edges = [0, *cuts[1:].tolist(), len(book)]
    children: list[ChildOrder] = []
    for a, b in itertools.pairwise(edges):
        if b <= a:
            continue
        chunk = book[a:b]
        now = None if now_offset_ns is None else int(chunk.ts_event[0]) + now_offset_ns
        for c in engine.on_book(chunk, now_ns=now).children:
            children.append(c)
            if fill:
                engine.on_fill(Fill(f"{c.child_order_id}:f", c.child_order_id, c.parent_id,
                                    c.quantity, c.limit_price, c.ts_event))
    return children


def test_engine_on_stationary_book_completes_with_one_child_per_period() -> None:
    eng = ExecutionEngine()
    parent = _parent()
    eng.submit(parent)
    children = _drive(eng, _book(), parent)
    assert [c.child_order_id for c in children] == [f"P1:{k}" for k in range(10)]
    assert sum(c.quantity for c in children) == pytest.approx(3000.0)
    assert eng.remaining("P1") == 0.0
    # stationary market, no risk term: the optimal schedule is close to even
    assert max(c.quantity for c in children) - min(c.quantity for c in children) <= 0.25 * 300
    assert all(c.quantity == int(c.quantity) for c in children)


def test_engine_sets_up_the_qp_once_per_parent_order() -> None:
    eng = ExecutionEngine()
    parent = _parent()
    eng.submit(parent)
    _drive(eng, _book(), parent)
    policy = eng.parents["P1"].policy
    assert policy.qp.setup_calls == 1  # type: ignore[attr-defined]


def test_engine_remaining_comes_from_fills_never_from_the_plan() -> None:
    eng = ExecutionEngine()
    parent = _parent()
    eng.submit(parent)
    children = _drive(eng, _book(), parent, fill=False)
    assert all(c.remaining_before == 3000.0 for c in children)
    assert all(c.quantity <= 3000.0 for c in children)
    assert children[-1].quantity > children[0].quantity  # it catches up on what did not fill
    assert eng.remaining("P1") == 3000.0


def test_engine_ignores_duplicate_and_unknown_fills() -> None:
    eng = ExecutionEngine()
    eng.submit(_parent())
    f = Fill("f1", "P1:0", "P1", 100.0, 50.01, T0)
    assert eng.on_fill(f) is FillOutcome.APPLIED
    assert eng.on_fill(f) is FillOutcome.DUPLICATE
    assert eng.on_fill(Fill("f2", "X:0", "X", 100.0, 50.01, T0)) is FillOutcome.UNKNOWN_PARENT
    assert eng.remaining("P1") == 2900.0
    assert eng.counters["duplicate_fill"] == 1 and eng.counters["unknown_parent_fill"] == 1


def test_engine_never_trades_on_a_crossed_book_and_waits_for_the_next_valid_row() -> None:
    book = _book()
    i = int(np.searchsorted(book.ts_event, T0 + 2 * PERIOD))
    book.bid_px[i : i + 3, 0] = book.ask_px[i : i + 3, 0] + 0.05  # rows i..i+2 crossed
    eng = ExecutionEngine()
    parent = _parent()
    eng.submit(parent)
    children = _drive(eng, book, parent)
    by_period = {c.period_index: c for c in children}
    assert by_period[2].ts_event == book.ts_event[i + 3]
    for c in children:
        j = int(np.searchsorted(book.ts_event, c.ts_event))
        assert book.bid_px[j, 0] < book.ask_px[j, 0]


def test_engine_refuses_stale_books() -> None:
    eng = ExecutionEngine(EngineSettings(risk=RiskLimits(max_snapshot_age_ms=500.0)))
    parent = _parent()
    eng.submit(parent)
    children = _drive(eng, _book(), parent, now_offset_ns=2 * NS)
    assert children == []
    assert eng.counters["skipped:stale_book"] == 10
    assert eng.parents["P1"].skipped == {"stale_book": 10}  # the parent's own count (GET /parents)


def test_engine_kill_switch_stops_new_child_orders() -> None:
    eng = ExecutionEngine()
    parent = _parent()
    eng.submit(parent)
    eng.kill_switch = True
    assert _drive(eng, _book(), parent) == []
    assert eng.counters["skipped:kill_switch"] == 10


def test_engine_respects_the_parent_limit_price() -> None:
    eng = ExecutionEngine()
    parent = _parent(limit_price=49.0)  # best ask is 50.01
    eng.submit(parent)
    assert _drive(eng, _book(), parent) == []
    eng2 = ExecutionEngine()
    parent2 = ParentOrder("P2", "TEST", "buy", 3000.0, T0, T0 + 10 * PERIOD, 60.0, limit_price=50.02)
    eng2.submit(parent2)
    children = _drive(eng2, _book(), parent2)
    assert children and all(c.limit_price <= 50.02 for c in children)


def test_a_period_the_limit_price_refuses_is_recorded_as_skipped_limit_price() -> None:
    eng = ExecutionEngine()
    eng.submit(_parent(periods=3, limit_price=49.0))  # best ask is 50.01: every period refused
    res = eng.on_book(_book(minutes=3))
    assert not res.children and len(res.decisions) == 3
    assert [d.outcome for d in res.decisions] == ["limit_price"] * 3
    assert all(d.quantity > 0 for d in res.decisions)  # the plan had shares: the limit refused them
    assert eng.counters["skipped:limit_price"] == 3 and eng.counters["no_child"] == 0
    assert eng.parents["P1"].skipped == {"limit_price": 3}
    eng2 = ExecutionEngine()
    eng2.submit(_parent(periods=3))
    res2 = eng2.on_book(_book(minutes=3))
    assert [d.outcome for d in res2.decisions] == ["child_order"] * 3 and len(res2.children) == 3
    assert eng2.parents["P1"].skipped == {}


def test_engine_caps_child_orders_at_the_participation_limit() -> None:
    eng = ExecutionEngine(EngineSettings(max_participation=0.05))
    parent = _parent(qty=50_000.0)
    eng.submit(parent)
    children = _drive(eng, _book(), parent)
    per_period_volume = 12 * 500.0 * 60 / 60  # 12 trades of 500 a minute
    for c in children[1:]:  # the first decision has no volume history yet
        assert c.quantity <= 0.05 * per_period_volume * 1.5
    assert eng.remaining("P1") > 0  # the cap makes completion impossible: shortfall, no exception


def test_engine_walks_each_row_once_per_symbol_whatever_the_number_of_parents() -> None:
    """Per-symbol market state: the cost of a row does not grow with the parents on its symbol."""
    from agent.core.driver import Driver

    ts = T0 + np.arange(1200) * NS // 2
    book = ladder_book(ts, mid=50.0, trade_every=7, trade_size=300.0)
    walked, sampled = {}, {}
    for n in (1, 40):
        for mode in ("ewma", "reverting"):
            eng = ExecutionEngine(EngineSettings(forecast=mode))  # type: ignore[arg-type]
            for i in range(n):
                eng.submit(ParentOrder(f"P{i}", "TEST", "buy" if i % 2 else "sell", 500.0 + 100 * i,
                                       T0 + 60 * NS, T0 + 540 * NS, 60.0))
            Driver(eng).feed(book, "TEST")
            mkt = eng.market("TEST")
            if mode == "ewma":
                walked[n] = sum(c.snapshots + c.excluded for c in mkt.curves.values())
            else:  # the reverting forecast samples the rows once per symbol; parents fit the samples
                assert not mkt.curves and mkt.sampler is not None
                sampled[n] = mkt.sampler.rows_after(None)[0].size
    assert walked[1] == walked[40] == 2 * len(book)  # one walk per row and side, shared by all parents
    assert sampled[1] == sampled[40] == 60  # one sample per 10 s of the 10-minute book
