"""Parent lifecycle (events, counts, retention) and state-topic hygiene (an ended parent written once,
tombstones after the retention, none for parents handed to another agent)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from agent.core.engine import ExecutionEngine
from agent.core.model import Fill, ParentOrder
from agent.live.lifecycle import ParentLifecycle
from agent.live.state_topic import MARKET_PREFIX, StateTracker, drop_unowned, restore
from tests.unit.agent.books import NS, T0, ladder_book

PERIOD = 60 * NS
N_FINISHED = 100


class Clock:
    def __init__(self) -> None:
        self.ns = 1_000 * NS

    def __call__(self) -> int:
        return self.ns


def _parent(pid: str, sym: str = "AAA", qty: float = 1000.0, start: int = T0) -> ParentOrder:
    return ParentOrder(pid, sym, "buy", qty, start, start + 5 * PERIOD, 60.0)


def _books(sym: str, minutes: float, t0: int = T0) -> object:
    ts = t0 + np.arange(int(minutes * 60)) * NS
    return ladder_book(ts, trade_every=5, trade_size=500.0, symbol=sym)


def test_scan_reports_each_end_once_with_filled_and_unfilled_and_counts_by_status() -> None:
    eng, clock = ExecutionEngine(), Clock()
    life = ParentLifecycle(3600, wall_clock=clock)
    for pid in ("P1", "P2", "P3"):
        eng.submit(_parent(pid))
    life.expect(["P1", "P2", "P3"])
    first = life.scan(eng, now_ns=T0)
    assert first.ended == [] and first.counts["active"] == 3 and first.active_symbols == {"AAA": T0}
    eng.cancel("P2")
    eng.on_fill(Fill("f1", "P3:0", "P3", 1000.0, 50.0, T0))  # P3 completes
    scan = life.scan(eng, now_ns=T0)
    ended = {e.parent_id: e for e in scan.ended}
    assert set(ended) == {"P2", "P3"}
    assert (ended["P2"].status, ended["P2"].filled, ended["P2"].unfilled, ended["P2"].unfilled_counts) == (
        "cancelled", 0.0, 1000.0, True)
    assert (ended["P3"].status, ended["P3"].unfilled, ended["P3"].unfilled_counts) == ("completed", 0.0, False)
    assert scan.counts == {"active": 1, "completed": 1, "cancelled": 1, "expired": 0}
    assert life.scan(eng, now_ns=T0).ended == []  # once


def test_a_parent_accepted_and_ended_between_two_scans_still_gives_its_event() -> None:
    eng = ExecutionEngine()
    life = ParentLifecycle(3600, wall_clock=Clock())
    life.expect(["P1"])
    eng.submit(_parent("P1"))
    eng.cancel("P1")
    assert [e.parent_id for e in life.scan(eng, now_ns=T0).ended] == ["P1"]


def test_a_restored_ended_parent_gives_no_event_and_no_unfilled_count() -> None:
    src = ExecutionEngine()
    src.submit(_parent("P1"))
    src.cancel("P1")
    eng = ExecutionEngine()
    eng.restore(src.snapshot("P1"))
    scan = ParentLifecycle(3600, wall_clock=Clock()).scan(eng, now_ns=T0)
    assert scan.ended == [] and scan.counts["cancelled"] == 1


def test_parents_that_have_not_started_need_no_market_data_yet() -> None:
    eng = ExecutionEngine()
    eng.submit(_parent("P1", "AAA"))
    eng.submit(_parent("P2", "BBB", start=T0 + 3600 * NS))
    assert ParentLifecycle(60, wall_clock=Clock()).scan(eng, now_ns=T0 + NS).active_symbols == {"AAA": T0}


def test_ended_parents_are_dropped_after_the_retention_and_tombstoned_once() -> None:
    eng, clock = ExecutionEngine(), Clock()
    life = ParentLifecycle(60, wall_clock=clock)
    tracker = StateTracker(eng, "a1")
    eng.submit(_parent("P1"))
    eng.submit(_parent("P2"))
    assert [k for k, _ in tracker.collect()] == ["P1", "P2"]
    eng.cancel("P1")
    life.scan(eng, now_ns=T0)
    assert [k for k, _ in tracker.collect()] == ["P1"]  # its final record
    clock.ns += 59 * NS
    assert life.scan(eng, now_ns=T0).dropped == []
    clock.ns += 1 * NS
    scan = life.scan(eng, now_ns=T0)
    assert scan.dropped == ["P1"] and "P1" not in eng.parents and scan.counts["cancelled"] == 0
    assert tracker.collect() == [("P1", None)]  # the tombstone
    assert tracker.collect() == []


def _parent_keys(out: list[tuple[str, bytes | None]]) -> list[str]:
    return [k for k, _ in out if not k.startswith(MARKET_PREFIX)]


def test_an_ended_parent_is_written_once_whatever_the_market_data_and_again_for_a_late_fill() -> None:
    eng = ExecutionEngine()
    tracker = StateTracker(eng, "a1")
    eng.submit(_parent("P1"))  # ends (cancelled)
    eng.submit(_parent("P2"))  # stays active on the same symbol
    tracker.collect()
    eng.on_book(_books("AAA", 0.5), symbol="AAA")
    eng.cancel("P1")
    assert sorted(_parent_keys(tracker.collect())) == ["P1", "P2"]  # P2 decided on the first book
    for minute in range(1, 4):  # market data move the symbol's market record, never a parent's record
        eng.on_book(_books("AAA", 0.5, T0 + minute * PERIOD), symbol="AAA")
        out = tracker.collect()
        assert _parent_keys(out) == [] or _parent_keys(out) == ["P2"]  # P2 only when it decided
        assert "P1" not in _parent_keys(out)
    eng.on_fill(Fill("late", "P1:0", "P1", 100.0, 50.0, T0))  # a late fill of a child sent before the cancel
    out = tracker.collect()
    assert _parent_keys(out) == ["P1"]
    assert json.loads(out[0][1] or b"{}")["filled_quantity"] == 100.0


def test_parents_handed_to_another_agent_get_no_tombstone() -> None:
    eng = ExecutionEngine()
    tracker = StateTracker(eng, "a1")
    eng.submit(_parent("P1", "AAA"))
    eng.submit(_parent("P2", "BBB"))
    tracker.collect()
    assert drop_unowned(eng, tracker, owns=lambda s: s == "AAA") == ["P2"]
    assert tracker.collect() == []


@pytest.mark.parametrize("retention_s", [0.0, 3600.0])
def test_a_restore_after_finished_parents_brings_none_back_as_active(retention_s: float) -> None:
    """The compacted topic as a dict (newest value per key, tombstones delete): what read_state returns.
    (1,000 parents through a real broker: tests/integration/test_ops.py.)"""
    eng, clock = ExecutionEngine(), Clock()
    life = ParentLifecycle(retention_s, wall_clock=clock)
    tracker = StateTracker(eng, "a1")
    topic: dict[str, bytes] = {}
    writes = 0

    def step() -> None:
        nonlocal writes
        for key, value in tracker.collect():
            writes += 1
            if value is None:
                topic.pop(key, None)
            else:
                topic[key] = value

    for i in range(N_FINISHED):
        pid = f"P{i:04d}"
        eng.submit(_parent(pid))
        step()
        if i % 2:
            eng.cancel(pid)
        else:
            eng.on_fill(Fill(f"f{i}", f"{pid}:0", pid, 1000.0, 50.0, T0))
        step()
    eng.on_book(_books("AAA", 1.0), symbol="AAA")  # market data after they all ended: no record
    step()
    assert writes == 2 * N_FINISHED  # one record when accepted, one when it ended
    life.scan(eng, now_ns=T0)
    step()
    records = {k: json.loads(v) for k, v in topic.items()}
    fresh = ExecutionEngine()
    restored = restore(fresh, StateTracker(fresh, "a2"), records, owns=lambda s: True)
    assert not fresh.active()
    assert all(r["status"] != "active" for r in restored)
    if retention_s == 0:
        assert records == {} and restored == []  # all tombstoned
    else:
        assert len(restored) == N_FINISHED


def test_restoring_an_ended_parent_builds_no_policy_an_active_one_builds_one() -> None:
    """A restore after many finished parents must not set up a QP for each (they never decide again)."""
    from agent.core.policy import mpc_policy

    built: list[str] = []

    def counting(parent: ParentOrder, settings: Any) -> Any:
        built.append(parent.parent_id)
        return mpc_policy(parent, settings)

    src = ExecutionEngine()
    src.submit(_parent("P1"))
    src.submit(_parent("P2"))
    src.cancel("P1")
    fresh = ExecutionEngine(policy_factory=counting)
    for pid in ("P1", "P2"):
        fresh.restore(src.snapshot(pid))
    assert built == ["P2"]
    assert fresh.snapshot("P1") == src.snapshot("P1")
    assert fresh.parents["P1"].policy.name == "ended" and fresh.parents["P2"].policy.name == "mpc"
