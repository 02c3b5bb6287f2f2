"""Engine crash-recovery records: export, JSON round trip, restore, carry on."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from agent.core.engine import ExecutionEngine
from agent.core.model import ChildOrder, Fill, ParentOrder
from agent.core.parent_state import FillOutcome
from feeds.book import BookBatch
from tests.unit.agent.books import NS, T0, ladder_book

PERIOD = 60 * NS


def _setup() -> tuple[ParentOrder, BookBatch, list[int]]:
    parent = ParentOrder("P1", "TEST", "buy", 3000.0, T0, T0 + 10 * PERIOD, 60.0)
    ts = T0 + np.arange(600) * NS
    mid = 50.0 + 0.01 * np.round(np.sin(np.arange(600) / 40.0) * 5)
    book = ladder_book(ts, mid=mid, trade_every=5, trade_size=500.0)
    cuts = np.searchsorted(ts, [parent.period_start_ns(k) for k in range(1, 10)]).tolist()
    return parent, book, [0, *cuts, len(book)]


def _step(engine: ExecutionEngine, chunk: BookBatch) -> list[ChildOrder]:
    out = engine.on_book(chunk).children
    for c in out:
        engine.on_fill(Fill(f"{c.child_order_id}:f", c.child_order_id, c.parent_id, c.quantity,
                            c.limit_price, c.ts_event))
    return out


def test_restored_engine_carries_on_exactly_where_the_crashed_one_stopped() -> None:
    parent, book, edges = _setup()
    ref = ExecutionEngine()
    ref.submit(parent)
    ref_children = [c for a, b in itertools.pairwise(edges) for c in _step(ref, book[a:b])]

    live = ExecutionEngine()
    live.submit(parent)
    crash_at = 5
    before = [c for a, b in itertools.pairwise(edges) for c in _step(live, book[a:b])]
    record = json.loads(json.dumps(live.snapshot("P1"), allow_nan=False))
    assert record["parent"]["quantity"] - record["filled"] == live.remaining("P1")

    restarted = ExecutionEngine()
    restarted.restore(record)
    assert restarted.remaining("P1") == live.remaining("P1")
    after = [c for a, b in zip(edges[crash_at:-1], edges[crash_at + 1:], strict=True)
             for c in _step(restarted, book[a:b])]
    children = before + after
    assert [c.child_order_id for c in children] == [c.child_order_id for c in ref_children]
    # the QP is cold-started after a restore: a solver tolerance may move a lot at most
    for got, want in zip(children, ref_children, strict=True):
        assert got.quantity == pytest.approx(want.quantity, abs=1.0)
    assert restarted.remaining("P1") == pytest.approx(0.0, abs=1.0)


def test_restore_keeps_fill_dedupe_and_status() -> None:
    parent, _, _ = _setup()
    eng = ExecutionEngine()
    eng.submit(parent)
    fill = Fill("F1", "P1:0", "P1", 100.0, 50.0, T0)
    eng.on_fill(fill)
    eng.cancel("P1")
    again = ExecutionEngine()
    again.restore(eng.snapshot("P1"))
    assert again.on_fill(fill) is FillOutcome.DUPLICATE
    assert again.parents["P1"].status == "cancelled" and again.active() == []
    assert again.remaining("P1") == 2900.0


def test_restore_keeps_the_periods_skipped_by_reason_and_reads_records_written_before_them() -> None:
    parent, _, _ = _setup()
    eng = ExecutionEngine()
    eng.submit(parent)
    eng.parents["P1"].skipped.update({"stale_book": 2, "limit_price": 1})
    record = eng.snapshot("P1")
    assert record["skipped"] == {"limit_price": 1, "stale_book": 2}
    again = ExecutionEngine()
    again.restore(record)
    assert again.parents["P1"].skipped == {"limit_price": 1, "stale_book": 2}
    older = {k: v for k, v in record.items() if k != "skipped"}
    again.restore(older)
    assert again.parents["P1"].skipped == {}


def test_restore_rejects_unknown_versions() -> None:
    parent, _, _ = _setup()
    eng = ExecutionEngine()
    eng.submit(parent)
    record = eng.snapshot("P1") | {"version": 99}
    with pytest.raises(ValueError, match="version"):
        ExecutionEngine().restore(record)
