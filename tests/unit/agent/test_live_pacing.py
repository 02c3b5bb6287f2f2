"""The live path at a small scale, in a clock the test controls: no decision skipped, no period late.

A decision is *late* when it is taken more than one period after its boundary.
Many parents on several symbols with 1-second periods and staggered starts
run through the whole service (in-memory bus, no Kafka) while the test moves
the clock forward and publishes the market data of each instant; every
period of every parent must get its child order, taken within a period of its
boundary. Also: latency-first steps (the child before the tail rows), and
parent orders read before the market data of the same instant.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from agent.core.engine import ExecutionEngine
from agent.core.model import NS_PER_S, ParentOrder
from agent.live.engine_step import EngineDriver
from agent.live.intake import Inbound
from agent.live.metrics import AgentMetrics
from agent.live.observe import ControlGate, StepReport
from agent.live.service import AgentService
from agent.live.settings import ServiceSection, TopicsSection
from feeds.book import BookBatch
from feeds.memory import MemoryBus, MemorySink, MemorySource
from feeds.ports import OutRecord
from feeds.wire import codec
from tests.unit.agent.books import T0, ladder_book

TOPICS = TopicsSection()
SYMBOLS = [f"S{i}" for i in range(6)]
PARENTS_PER_SYMBOL = 5
PERIODS = 12
TICK_NS = 100_000_000  # the test clock moves 100 ms per step; each symbol books 2 rows per step


def _parents() -> list[ParentOrder]:
    out = []
    for i in range(len(SYMBOLS) * PARENTS_PER_SYMBOL):
        start = T0 + 2 * NS_PER_S + i * NS_PER_S // (len(SYMBOLS) * PARENTS_PER_SYMBOL)  # staggered
        out.append(ParentOrder(f"P{i:02d}", SYMBOLS[i % len(SYMBOLS)], "buy" if i % 2 else "sell",
                               1200.0, start, start + PERIODS * NS_PER_S, period_s=1.0))
    return out


def _rows(t_ns: int) -> list[OutRecord]:
    """Two snapshots per symbol in the 100 ms before ``t_ns`` (no trades: no volume cap)."""
    out = []
    for sym in SYMBOLS:
        book = ladder_book(np.array([t_ns - 60_000_000, t_ns - 10_000_000]), mid=50.0, symbol=sym)
        out.extend(OutRecord(TOPICS.md, codec.encode(codec.batch_row_to_mbp10(book, i)), key=sym.encode())
                   for i in range(len(book)))
    return out


@pytest.mark.parametrize(("buffer_rows", "runner"), [(0, "thread"), (2000, "thread"), (0, "loop"), (2000, "loop")])
async def test_many_parents_one_second_periods_no_decision_skipped_and_none_late(buffer_rows: int, runner: str) -> None:
    now = [T0]
    bus = MemoryBus()
    parents = _parents()
    bus.apply([OutRecord(TOPICS.parent_orders, codec.encode(codec.parent_from_model(p)), key=p.symbol.encode())
               for p in parents])
    engine = ExecutionEngine(clock=lambda: now[0])
    reports: list[StepReport] = []
    source = MemorySource(bus, [TOPICS.parent_orders, TOPICS.fills, TOPICS.md])
    metrics = AgentMetrics.create(CollectorRegistry())
    svc = AgentService(engine, sink=MemorySink(bus), metrics=metrics,
                       source=source, clock=lambda: now[0], on_step=reports.append,
                       settings=ServiceSection(poll_timeout_ms=1, md_buffer_rows=buffer_rows,
                                               engine_runner=runner))  # type: ignore[arg-type]
    decided_at: dict[str, int] = {}  # child_order_id -> the test clock when it was published
    async with svc:
        end = max(p.end_ns for p in parents) + NS_PER_S
        while now[0] < end:
            now[0] += TICK_NS
            bus.apply(_rows(now[0]))
            while await svc.step():  # everything published up to this instant
                pass
            for v in bus.values(TOPICS.child_orders):
                decided_at.setdefault(codec.decode(v).child_order_id, now[0])
    by_id = {p.parent_id: p for p in parents}
    expected = {f"{p.parent_id}:{k}" for p in parents for k in range(PERIODS)}
    assert set(decided_at) == expected  # no decision skipped: every period of every parent traded
    late = {cid: (t - by_id[cid.split(":")[0]].period_start_ns(int(cid.split(":")[1]))) / NS_PER_S
            for cid, t in decided_at.items()}
    assert max(late.values()) <= 1.0, max(late.items(), key=lambda kv: kv[1])  # none later than a period
    assert max(late.values()) <= TICK_NS / NS_PER_S + 1e-9  # in fact within the step that closed it
    assert all(engine.summary(p.parent_id)["remaining"] == 1200.0 for p in parents)  # no fills here
    assert sum(r.children for r in reports) == len(expected)
    # the agent's own account agrees: every period a child order, none late, each within the step
    reg = metrics.registry
    assert reg.get_sample_value("mpc_agent_decisions_total", {"outcome": "child_order"}) == len(expected)
    assert reg.get_sample_value("mpc_agent_decisions_late_total") == 0
    assert reg.get_sample_value("mpc_agent_decision_delay_seconds_count") == len(expected)
    assert reg.get_sample_value("mpc_agent_decision_delay_seconds_bucket", {"le": "0.1"}) == len(expected)
    # the engine thread's CPU: every step's and catch-up's, as of the last published step
    engine_cpu = reg.get_sample_value("mpc_agent_engine_cpu_seconds_total")
    assert 0 < engine_cpu <= svc.engine_cpu_s
    assert engine_cpu >= sum(r.engine_cpu_s for r in reports)


async def test_an_agent_behind_its_feed_counts_late_decisions_and_stale_skips_as_an_outside_clock_does() -> None:
    """The clock jumps 2.5 s a step (the agent falls behind): the rows of 2.5 s come at once. A period
    decided on a row older than ``max_snapshot_age_ms`` (2 s) is skipped ``stale_book``; the others
    trade, some more than a period after their boundary. The agent's metrics must match what the
    test computes from when it published each row."""
    jump = 25 * TICK_NS
    now = [T0]
    bus = MemoryBus()
    parents = _parents()[:12]
    bus.apply([OutRecord(TOPICS.parent_orders, codec.encode(codec.parent_from_model(p)), key=p.symbol.encode())
               for p in parents])
    metrics = AgentMetrics.create(CollectorRegistry())
    engine = ExecutionEngine(clock=lambda: now[0])
    svc = AgentService(engine, sink=MemorySink(bus), metrics=metrics, clock=lambda: now[0],
                       source=MemorySource(bus, [TOPICS.parent_orders, TOPICS.fills, TOPICS.md]),
                       settings=ServiceSection(poll_timeout_ms=1, md_buffer_rows=0))
    published_at: dict[int, int] = {}  # row ts -> the clock when it was published (every symbol alike)
    async with svc:
        end = max(p.end_ns for p in parents) + NS_PER_S
        t = T0
        while now[0] < end:
            now[0] += jump
            while t < now[0]:
                t += TICK_NS
                bus.apply(_rows(t))
                for r in (t - 60_000_000, t - 10_000_000):
                    published_at[r] = now[0]
            while await svc.step():
                pass
        listed = {r["parent_id"]: r for r in svc.ops.lifecycle.rows(engine)}  # what GET /parents shows
    rows = np.array(sorted(published_at))
    late = stale = 0
    for p in parents:
        stale_p = 0
        for k in range(PERIODS):
            b = p.period_start_ns(k)
            r = int(rows[np.searchsorted(rows, b)])  # the first row at or after the boundary decides
            ack = published_at[r]  # in the step of the instant it was published
            stale_p += (ack - r) / 1e6 > 2_000.0
            late += ack - b > p.period_ns
        stale += stale_p
        assert listed[p.parent_id]["skipped_periods"] == stale_p  # each parent's own count
        assert listed[p.parent_id]["skipped"] == ({"stale_book": stale_p} if stale_p else {})
    n = len(parents) * PERIODS
    children = {codec.decode(v).child_order_id for v in bus.values(TOPICS.child_orders)}
    reg = metrics.registry
    assert 0 < stale < late < n  # all three kinds: stale skips, late child orders, child orders on time
    assert reg.get_sample_value("mpc_agent_decisions_total", {"outcome": "stale_book"}) == stale
    assert reg.get_sample_value("mpc_agent_decisions_total", {"outcome": "child_order"}) == n - stale == len(children)
    assert reg.get_sample_value("mpc_agent_decisions_late_total") == late
    assert reg.get_sample_value("mpc_agent_decision_delay_seconds_count") == n


def test_a_step_sends_the_child_before_feeding_the_rows_that_close_no_period() -> None:
    engine = ExecutionEngine()
    engine.submit(ParentOrder("P", "A", "buy", 1000.0, T0, T0 + 10 * NS_PER_S, period_s=1.0))
    queued: list[Any] = []
    drv = EngineDriver(engine, ServiceSection(md_buffer_rows=0), defer=queued.append)
    ts = T0 + np.arange(30) * 50_000_000  # 0 .. 1.45 s: decisions at 0 s and at 1 s
    book = ladder_book(ts, symbol="A")
    res = drv.step(Inbound(md=book))
    assert [c.period_index for c in res.children] == [0, 1]
    assert drv.held_rows == 9  # rows after the 1 s decision row: not fed yet
    assert engine.market("A").last_ts == int(ts[20])  # the estimators stop at the decision row
    assert len(queued) == 1  # the catch-up, queued behind the step
    queued[0]()
    assert drv.held_rows == 0 and engine.market("A").last_ts == int(ts[-1])


def test_a_queued_catch_up_yields_the_engine_thread_to_a_waiting_step() -> None:
    engine = ExecutionEngine()
    queued: list[Any] = []
    drv = EngineDriver(engine, ServiceSection(md_buffer_rows=0), defer=queued.append)
    ts = T0 + np.arange(10) * 100_000_000
    drv.step(Inbound(md=BookBatch.concat([ladder_book(ts, symbol=s) for s in ("A", "B", "C")])))
    assert drv.held_rows == 30 and len(queued) == 1
    waiting = [True]
    drv.waiting = lambda: waiting[0]
    queued.pop()()  # a step is waiting: the catch-up feeds one symbol and queues the rest behind it
    assert drv.held_rows == 20 and len(queued) == 1
    waiting[0] = False
    queued.pop()()
    assert drv.held_rows == 0 and not queued


def test_held_market_data_waits_for_a_parent_order_of_the_same_instant() -> None:
    engine = ExecutionEngine()
    drv = EngineDriver(engine, ServiceSection(md_buffer_rows=0))
    ts = T0 + np.arange(40) * 100_000_000
    book = ladder_book(ts, symbol="A")
    res = drv.step(Inbound(md=book[:25], hold_md=True))  # the parent-order partition is behind
    assert not res.children and drv.held_rows == 25
    late_parent = ParentOrder("P", "A", "buy", 1000.0, T0, T0 + 4 * NS_PER_S, period_s=1.0)
    res = drv.step(Inbound(control=[late_parent], md=book[25:]))
    assert [c.period_index for c in res.children] == [0, 1, 2, 3]  # its first period still on time
    assert res.children[0].ts_event == T0


class _Consumer:
    """The parts of an aiokafka consumer the gate reads."""

    def __init__(self, ends: dict[Any, int | None], positions: dict[Any, int]) -> None:
        self.ends, self.positions = ends, positions

    def assignment(self) -> set[Any]:
        return set(self.ends)

    def last_stable_offset(self, tp: Any) -> int:
        return -1

    def highwater(self, tp: Any) -> int | None:
        return self.ends[tp]

    async def position(self, tp: Any) -> int:
        return self.positions[tp]


class _Source:
    def __init__(self, consumer: _Consumer) -> None:
        self.consumer = consumer


async def test_control_gate_holds_market_data_while_a_control_partition_is_behind() -> None:
    from collections import namedtuple

    tp = namedtuple("tp", "topic partition")
    parents, md = tp(TOPICS.parent_orders, 0), tp(TOPICS.md, 0)
    consumer = _Consumer({parents: 5, md: 100}, {parents: 3, md: 10})
    gate = ControlGate([TOPICS.parent_orders, TOPICS.fills], max_wait_ms=50)
    src = _Source(consumer)
    assert await gate.hold(src)  # parent orders 3 of 5: hold
    consumer.positions[parents] = 5
    assert not await gate.hold(src)  # caught up (market data behind does not matter)
    consumer.ends[parents] = None
    assert await gate.hold(src)  # never fetched: its end is unknown
    time.sleep(0.06)
    assert not await gate.hold(src)  # shut longer than max_wait_ms: open, never stall market data
    assert not await gate.hold(object())  # not a Kafka source
