"""State-topic records: which parents are written, ownership by symbol partition, restore/drop."""

from __future__ import annotations

import json

import numpy as np
from aiokafka.partitioner import DefaultPartitioner

from agent.core.engine import ExecutionEngine
from agent.core.model import ParentOrder
from agent.live.state_topic import StateTracker, drop_unowned, restore, symbol_partition
from feeds.wire import codec
from feeds.wire.messages import AgentStateMsg
from tests.unit.agent.books import NS, T0, ladder_book

PERIOD = 60 * NS


def _engine() -> ExecutionEngine:
    eng = ExecutionEngine()
    for pid, sym in (("P1", "AAA"), ("P2", "BBB")):
        eng.submit(ParentOrder(pid, sym, "buy", 1000.0, T0, T0 + 5 * PERIOD, 60.0))
    return eng


def test_symbol_partition_matches_the_kafka_default_partitioner() -> None:
    part = DefaultPartitioner()
    for n in (1, 2, 6, 7):
        for sym in ("FROG", "AAA", "SYM07", "BRK.B"):
            assert symbol_partition(sym, n) == part(sym.encode(), list(range(n)), list(range(n)))


def test_tracker_writes_new_parents_then_only_the_ones_that_changed() -> None:
    eng = _engine()
    tracker = StateTracker(eng, "a1")
    first = tracker.collect()
    assert [pid for pid, _ in first] == ["P1", "P2"]
    msg = codec.decode_as(first[0][1], AgentStateMsg)
    assert msg.agent_id == "a1" and msg.remaining == 1000.0 and msg.engine["parent"]["symbol"] == "AAA"
    assert tracker.collect() == []  # nothing happened
    ts = T0 + np.arange(90) * NS
    book = ladder_book(ts, mid=np.full(90, 50.0), trade_every=5, trade_size=500.0, symbol="AAA")
    eng.on_book(book, symbol="AAA")
    assert [pid for pid, _ in tracker.collect()] == ["P1"]  # only AAA's parent moved


def test_restore_takes_owned_missing_parents_and_drop_forgets_unowned_ones() -> None:
    src = _engine()
    records = {pid: json.loads(value) for pid, value in StateTracker(src, "a1").collect()}
    eng = ExecutionEngine()
    tracker = StateTracker(eng, "a2")
    done = restore(eng, tracker, records, owns=lambda s: s == "BBB")
    assert [r["parent_id"] for r in done] == ["P2"] and done[0]["remaining"] == 1000.0
    assert set(eng.parents) == {"P2"} and tracker.collect() == []  # restored == already written
    assert restore(eng, tracker, records, owns=lambda s: True)[0]["parent_id"] == "P1"
    assert restore(eng, tracker, records, owns=lambda s: True) == []  # present parents are kept
    assert drop_unowned(eng, tracker, owns=lambda s: s == "AAA") == ["P2"]
    assert set(eng.parents) == {"P1"} and "P2" not in tracker.written
