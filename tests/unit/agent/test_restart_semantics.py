"""What a restart does to the periods missed while the agent was down (issue 13 item 4), wall clock.

Live (``service.clock = "wall"``) the engine gets ``now_ns`` and refuses a
book older than ``risk.max_snapshot_age_ms``: a backlog of the down time is
fed to the estimators, each missed period is *skipped* (recorded as
``stale_book``, no child order), and the remaining quantity is re-planned
over the periods left once fresh books arrive. Without any backlog the first
fresh book decides the current period and the missed ones are simply gone.
(Under the event clock the backlog is decided as a replay would:
``tests/integration/test_restart_burst.py``.)
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agent.core.engine import ExecutionEngine
from agent.core.model import ChildOrder, Fill, ParentOrder
from agent.core.policy import EngineSettings
from tests.unit.agent.books import NS, T0, ladder_book

PERIOD = 60 * NS
PERIODS, QTY = 20, 6000.0
UP_TO, BACK_AT = 5, 12  # decided periods 0-4 before the crash, restarted in period 12

EVEN = EngineSettings(forecast="ewma")
"""Flat forecasts (the plan is the even split of what is left): these tests are about which periods a
restart decides and how it re-plans the remainder, not about the reverting forecast's timing."""


def _parent() -> ParentOrder:
    return ParentOrder("P1", "TEST", "buy", QTY, T0, T0 + PERIODS * PERIOD, 60.0)


def _rows(k0: int, k1: int):  # type: ignore[no-untyped-def]
    """One row a second over periods ``[k0, k1)``, a trade every fifth."""
    ts = T0 + k0 * PERIOD + np.arange((k1 - k0) * 60) * NS
    return ladder_book(ts, trade_every=5, trade_size=500.0)


def _feed(engine: ExecutionEngine, rows, now: int | None, children: list[ChildOrder]) -> None:  # type: ignore[no-untyped-def]
    """Feed ``rows`` a period at a time (``now``: None = each chunk is fresh), filling every child."""
    ts = rows.ts_event
    edges = np.unique(np.concatenate([[0], np.searchsorted(ts, T0 + PERIOD * np.arange(PERIODS)), [len(ts)]]))
    for a, b in itertools.pairwise(edges):
        if b > a:
            chunk = rows[int(a):int(b)]
            for c in engine.on_book(chunk, now_ns=int(chunk.ts_event[0]) if now is None else now).children:
                children.append(c)
                engine.on_fill(Fill(f"{c.child_order_id}/f", c.child_order_id, "P1", c.quantity, c.limit_price,
                                    c.ts_event))


def _crashed_at(k: int) -> tuple[dict, list[ChildOrder]]:  # type: ignore[type-arg]
    eng = ExecutionEngine(EVEN)
    eng.submit(_parent())
    before: list[ChildOrder] = []
    _feed(eng, _rows(0, k), None, before)
    return eng.snapshot("P1"), before


@pytest.mark.parametrize("backlog", [True, False])
def test_wall_clock_restart_skips_the_missed_periods_and_replans_the_rest(backlog: bool) -> None:
    record, before = _crashed_at(UP_TO)
    assert [c.period_index for c in before] == list(range(UP_TO))
    eng = ExecutionEngine(EVEN)
    eng.restore(record)
    after: list[ChildOrder] = []
    if backlog:  # the down time's books arrive late: all older than max_snapshot_age_ms
        _feed(eng, _rows(UP_TO, BACK_AT), T0 + BACK_AT * PERIOD, after)
        assert after == []
        assert eng.counters["skipped:stale_book"] == BACK_AT - UP_TO
        assert eng.parents["P1"].next_period == BACK_AT
    _feed(eng, _rows(BACK_AT, PERIODS), None, after)
    assert [c.period_index for c in after] == list(range(BACK_AT, PERIODS))
    left = QTY - sum(c.quantity for c in before)
    assert after[0].remaining_before == left
    # re-planned over the periods left, not the original even slice
    assert after[0].quantity > 1.5 * QTY / PERIODS
    assert after[0].quantity == pytest.approx(left / (PERIODS - BACK_AT), rel=0.25)
    assert sum(c.quantity for c in before + after) == pytest.approx(QTY)
    assert eng.parents["P1"].status == "completed"
