"""State-topic records: which parents are written, ownership by symbol partition, restore/drop."""

from __future__ import annotations

import json

import numpy as np
from aiokafka.partitioner import DefaultPartitioner

from agent.core.engine import ExecutionEngine
from agent.core.model import ParentOrder
from agent.live.state_topic import StateTracker, drop_unowned, market_key, restore, symbol_partition
from feeds.book import BookBatch
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


def _book(sym: str, seconds: int, start_s: int = 0) -> BookBatch:
    ts = T0 + (start_s + np.arange(seconds)) * NS
    return ladder_book(ts, mid=np.full(seconds, 50.0), trade_every=5, trade_size=500.0, symbol=sym)


def test_tracker_writes_new_parents_then_only_the_ones_that_changed() -> None:
    eng = _engine()
    tracker = StateTracker(eng, "a1")
    first = tracker.collect()
    assert [pid for pid, _ in first] == ["P1", "P2"]  # no market state seen yet: no market record
    msg = codec.decode_as(first[0][1], AgentStateMsg)
    assert msg.agent_id == "a1" and msg.remaining == 1000.0 and msg.engine["parent"]["symbol"] == "AAA"
    assert msg.engine["symbol"] is None and len(first[0][1]) < 2000  # the market state is written apart
    assert tracker.collect() == []  # nothing happened
    eng.on_book(_book("AAA", 90), symbol="AAA")
    assert [key for key, _ in tracker.collect()] == ["P1"]  # only AAA's parent moved (it decided)
    assert [key for key, _ in tracker.collect()] == [market_key("AAA")]  # a quiet step: the market


def test_tracker_writes_a_parent_only_when_it_changed_and_the_market_at_most_every_interval() -> None:
    eng = _engine()
    tracker = StateTracker(eng, "a1", market_interval_s=30.0)
    tracker.collect()
    eng.on_book(_book("AAA", 61), symbol="AAA")  # rows 0..60 s: P1 decides at 0 s and 60 s
    assert [key for key, _ in tracker.collect()] == ["P1"]  # latency first: the market waits
    assert [key for key, _ in tracker.collect()] == [market_key("AAA")]  # for a step without decisions
    eng.on_book(_book("AAA", 20, 61), symbol="AAA")  # 61..80 s: no decision, market 20 s newer
    assert tracker.collect() == []
    eng.on_book(_book("AAA", 10, 81), symbol="AAA")  # 81..90 s: 30 s after the last market record
    out = tracker.collect()
    assert [key for key, _ in out] == [market_key("AAA")]
    msg = json.loads(out[0][1])
    assert msg["schema"] == "agent_market.v1" and msg["symbol"] == "AAA" and msg["last_ts"] == T0 + 90 * NS
    assert len(out[0][1]) < 50_000  # lattices packed: under a 64 KiB max_message_bytes
    eng.on_book(_book("AAA", 61, 91), symbol="AAA")  # 91..151 s: P1 decides at 120 s; market 61 s newer
    assert [key for key, _ in tracker.collect()] == ["P1", market_key("AAA")]  # overdue: with the decision


def test_restore_takes_the_market_records_of_owned_symbols_then_their_parents() -> None:
    src = _engine()
    tracker = StateTracker(src, "a1")
    src.on_book(_book("AAA", 61), symbol="AAA")
    records = {key: json.loads(value) for key, value in tracker.collect() + tracker.collect()}
    eng = ExecutionEngine()
    done = restore(eng, StateTracker(eng, "a2"), records, owns=lambda s: s == "AAA")
    assert [r["parent_id"] for r in done] == ["P1"] and done[0]["next_period"] == 2
    assert eng.market("AAA").last_ts == src.market("AAA").last_ts
    np.testing.assert_array_equal(eng.market("AAA").curve("buy", 300.0).a_sum,
                                  src.market("AAA").curve("buy", 300.0).a_sum)


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



def test_every_record_names_the_symbol_whose_partition_commits_it() -> None:
    """Per-partition transactions route a state record by its symbol: a parent's record and its
    tombstone by the parent's symbol, a market record by its own, the kill switch by none."""
    eng = _engine()
    tracker = StateTracker(eng, "a1")
    assert {k: tracker.symbol_of(k) for k, _ in tracker.collect()} == {"P1": "AAA", "P2": "BBB"}
    eng.on_book(_book("AAA", 90), symbol="AAA")
    tracker.collect()
    out = tracker.collect()
    assert [(k, tracker.symbol_of(k)) for k, _ in out] == [(market_key("AAA"), "AAA")]
    eng.cancel("P2")
    tracker.collect()
    eng.drop("P2")
    out = tracker.collect()
    assert ("P2", None) in out and tracker.symbol_of("P2") == "BBB"  # the tombstone goes with BBB's partition
    assert tracker.symbol_of("__kill_switch__") is None


def test_exact_mode_writes_every_moved_symbol_in_every_step_decisions_or_not() -> None:
    """``market_interval_s = 0`` (the event clock's default): the step that fed a symbol's rows carries its
    market record, so the committed offsets and the market state always agree."""
    eng = _engine()
    tracker = StateTracker(eng, "a1", market_interval_s=0.0)
    tracker.collect()
    eng.on_book(_book("AAA", 61), symbol="AAA")  # P1 decides: a busy step still carries AAA's market
    assert [key for key, _ in tracker.collect()] == ["P1", market_key("AAA")]
    assert tracker.collect() == []  # nothing moved
    eng.on_book(_book("BBB", 5), symbol="BBB")
    eng.on_book(_book("AAA", 5, start_s=61), symbol="AAA")
    assert sorted(key for key, _ in tracker.collect() if key.startswith(" ")) == [market_key("AAA"), market_key("BBB")]
