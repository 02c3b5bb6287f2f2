"""agent.live.service with the in-memory bus and the file feed (no Kafka).

Subjects: parity with the replay runner, DLQ routing, fill de-duplication,
parent orders from the control topic, conflation, stale books, the watchdog
and shutdown.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from agent.app.fill_responder import SimulatedVenue
from agent.core.engine import ExecutionEngine, mpc_policy
from agent.core.model import NS_PER_S, Fill, ParentOrder
from agent.live.metrics import AgentMetrics
from agent.live.service import AgentService
from agent.live.settings import ServiceSection, TopicsSection
from feeds.book import BookBatch
from feeds.file_feed import FileFeed
from feeds.memory import MemoryBus, MemorySink, MemorySource
from feeds.wire import codec
from replay.runner import run_strategy
from replay.simulator import FillSimulator

T0 = 1_743_687_000 * NS_PER_S  # 2025-04-03 13:30 UTC
TOPICS = TopicsSection()


def make_book(symbol: str = "FROG", minutes: float = 12.0, dt_ms: int = 200, seed: int = 7) -> BookBatch:
    """A valid 10-level book: random-walk mid on a 1-cent grid, a trade every 5th row."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60_000 / dt_ms)
    ts = T0 + np.arange(n, dtype=np.int64) * dt_ms * 1_000_000
    mid_ticks = 1000 + np.cumsum(rng.integers(-1, 2, n))
    half = rng.integers(1, 3, n)
    lv = np.arange(10)
    bid_px = (mid_ticks - half)[:, None] - lv[None, :]
    ask_px = (mid_ticks + half)[:, None] + lv[None, :]
    trade = (np.arange(n) % 5) == 4
    return BookBatch(
        ts_event=ts, symbol=np.full(n, symbol), action=np.where(trade, "T", "A"),
        side=np.where(trade, "B", "A"), price=np.where(trade, (mid_ticks + half) / 100.0, np.nan),
        size=np.where(trade, rng.integers(50, 400, n), 100).astype(float),
        bid_px=bid_px / 100.0, bid_sz=rng.integers(100, 800, (n, 10)).astype(float),
        ask_px=ask_px / 100.0, ask_sz=rng.integers(100, 800, (n, 10)).astype(float),
    )


def parent(symbol: str = "FROG", pid: str = "P1", qty: float = 3000.0) -> ParentOrder:
    return ParentOrder(pid, symbol, "buy", qty, T0 + 120 * NS_PER_S, T0 + 600 * NS_PER_S, period_s=60.0)


def metrics() -> AgentMetrics:
    return AgentMetrics.create(CollectorRegistry())


def mbp_records(book: BookBatch) -> list[bytes]:
    return [codec.encode(codec.batch_row_to_mbp10(book, i)) for i in range(len(book))]


def publish_md(bus: MemoryBus, book: BookBatch) -> None:
    from feeds.ports import OutRecord

    bus.apply([OutRecord(TOPICS.md, v, key=str(book.symbol[0]).encode()) for v in mbp_records(book)])


def child_tuples(children: list) -> list[tuple[str, float, float, int]]:
    return [(c.child_order_id, c.quantity, c.limit_price, c.ts_event) for c in children]


@pytest.mark.parametrize(("batch_rows", "buffer_rows", "runner"),
                         [(777, 5000, "thread"), (50, 0, "thread"), (50, 120, "thread"), (50, 120, "loop"),
                          (50, 0, "loop")])
async def test_file_feed_service_child_orders_equal_replay_runner(batch_rows: int, buffer_rows: int,
                                                                 runner: str) -> None:
    book = make_book()
    p = parent()
    ref = run_strategy(book, p, mpc_policy, FillSimulator(book), strategy="mpc")
    assert len(ref.children) >= 5
    bus = MemoryBus()
    engine = ExecutionEngine()
    venue = SimulatedVenue(book)
    svc = AgentService(engine, sink=MemorySink(bus), metrics=metrics(), clock=None, venue=venue,
                       md_feed=FileFeed(book, speed_x=0, batch_rows=batch_rows),
                       settings=ServiceSection(md_buffer_rows=buffer_rows,
                                               engine_runner=runner))  # type: ignore[arg-type]
    async with svc:
        await svc.submit(p)
        await svc.run(until_idle=True)
    live = [codec.child_to_model(codec.decode(v)) for v in bus.values(TOPICS.child_orders)]
    assert child_tuples(live) == child_tuples(ref.children)
    fills = [codec.fill_to_model(codec.decode(v)) for v in bus.values(TOPICS.fills)]
    assert [f.fill_id for f in fills] == [f.fill_id for f in ref.fills]
    assert engine.filled("P1") == pytest.approx(sum(f.quantity for f in ref.fills))


async def test_md_from_bus_bad_messages_go_to_dlq_with_reason_and_are_counted() -> None:
    book = make_book(minutes=1)
    bus = MemoryBus()
    publish_md(bus, book[:10])
    good = json.loads(mbp_records(book[10:11])[0])
    crossed = dict(good, bid_px=[good["ask_px"][0] + 0.05, *good["bid_px"][1:]])
    backwards = dict(good, ts_event=int(book.ts_event[0]) - 1)
    from feeds.ports import OutRecord

    bus.apply([OutRecord(TOPICS.md, b"{not json", key=b"FROG"),
               OutRecord(TOPICS.md, json.dumps(crossed).encode(), key=b"FROG"),
               OutRecord(TOPICS.md, json.dumps(backwards).encode(), key=b"FROG"),
               OutRecord(TOPICS.md, json.dumps(good).encode(), key=b"FROG")])
    m = metrics()
    svc = AgentService(ExecutionEngine(), sink=MemorySink(bus), metrics=m, clock=None,
                       source=MemorySource(bus, [TOPICS.md, TOPICS.parent_orders, TOPICS.fills]),
                       settings=ServiceSection(poll_timeout_ms=10))
    async with svc:
        await svc.run(until_idle=True)
    dlq = bus.records(TOPICS.dlq)
    reasons = [r.header("error") for r in dlq]
    assert reasons == [b"invalid_json", b"crossed_book", b"ts_backwards"]
    assert dlq[0].value == b"{not json"  # original bytes
    reg = m.registry
    assert reg.get_sample_value("mpc_agent_snapshots_rejected_total", {"reason": "crossed_book"}) == 1.0
    assert reg.get_sample_value("mpc_agent_snapshots_rejected_total", {"reason": "ts_backwards"}) == 1.0
    assert reg.get_sample_value("mpc_agent_snapshots_total") == 11.0


async def test_parent_order_from_topic_trades_and_duplicate_fills_are_ignored() -> None:
    book = make_book()
    bus = MemoryBus()
    from feeds.ports import OutRecord

    p = parent()
    bus.apply([OutRecord(TOPICS.parent_orders, codec.encode(codec.parent_from_model(p)), key=b"P1")])
    publish_md(bus, book[: len(book) // 2])
    m = metrics()
    engine = ExecutionEngine()
    source = MemorySource(bus, [TOPICS.parent_orders, TOPICS.fills, TOPICS.md])
    svc = AgentService(engine, sink=MemorySink(bus), metrics=m, clock=None, source=source,
                       settings=ServiceSection(poll_timeout_ms=10))
    async with svc:
        await svc.run(until_idle=True)
        children = [codec.decode(v) for v in bus.values(TOPICS.child_orders)]
        assert children, "the parent order from the topic produced child orders"
        c0 = children[0]
        fill = Fill("F1", c0.child_order_id, "P1", 100.0, 10.0, int(c0.ts_event))
        raw = codec.encode(codec.fill_from_model(fill))
        bus.apply([OutRecord(TOPICS.fills, raw, key=b"P1"), OutRecord(TOPICS.fills, raw, key=b"P1")])
        await svc.run(until_idle=True)
        assert engine.filled("P1") == 100.0
        assert m.registry.get_sample_value("mpc_agent_fills_duplicate_total") == 1.0
        bus.apply([OutRecord(TOPICS.parent_orders, b'{"schema":"parent_cancel.v1","parent_id":"P1"}',
                             key=b"P1")])
        await svc.run(until_idle=True)
        assert not engine.active()
    assert m.registry.get_sample_value("mpc_agent_child_orders_total", {"side": "buy"}) == len(children)
    assert m.registry.get_sample_value("mpc_agent_solve_duration_seconds_count") >= len(children)


async def test_bad_parent_order_goes_to_its_dlq_topic_and_never_stops_the_agent() -> None:
    bus = MemoryBus()
    from feeds.ports import OutRecord

    bad = {"schema": "parent_order.v1", "parent_id": "X", "symbol": "FROG", "side": "buy",
           "quantity": -5, "start": T0, "end": T0 + NS_PER_S, "period_s": 60}
    bus.apply([OutRecord(TOPICS.parent_orders, json.dumps(bad).encode(), key=b"X")])
    m = metrics()
    svc = AgentService(ExecutionEngine(), sink=MemorySink(bus), metrics=m, clock=None,
                       source=MemorySource(bus, [TOPICS.parent_orders]),
                       settings=ServiceSection(poll_timeout_ms=10))
    async with svc:
        await svc.run(until_idle=True)
    dlq = bus.records(f"{TOPICS.parent_orders}.dlq")
    assert len(dlq) == 1 and dlq[0].header("error") is not None
    assert not svc.engine.parents


async def test_wall_clock_far_ahead_makes_the_engine_refuse_stale_books() -> None:
    book = make_book()
    bus = MemoryBus()
    engine = ExecutionEngine()
    late = lambda: int(book.ts_event[-1]) + 3600 * NS_PER_S  # noqa: E731
    svc = AgentService(engine, sink=MemorySink(bus), metrics=metrics(), clock=late,
                       venue=SimulatedVenue(book), md_feed=FileFeed(book, batch_rows=500))
    async with svc:
        await svc.submit(parent())
        await svc.run(until_idle=True)
    assert bus.values(TOPICS.child_orders) == []
    assert engine.counters["skipped:stale_book"] >= 5


def test_conflate_latest_keeps_trades_decision_rows_and_the_newest_book() -> None:
    book = make_book(minutes=5)
    engine = ExecutionEngine()
    p = ParentOrder("P", "FROG", "buy", 1000.0, T0, T0 + 300 * NS_PER_S, period_s=60.0)
    engine.submit(p)
    svc = AgentService(engine, sink=MemorySink(MemoryBus()), metrics=metrics(),
                       settings=ServiceSection(md_conflation="latest"))
    kept = svc.driver._conflate(book, "FROG")
    trades = book.action == "T"
    assert int((kept.action == "T").sum()) == int(trades.sum())
    assert kept.ts_event[-1] == book.ts_event[-1]
    for k in range(1, 5):
        first = int(np.searchsorted(book.ts_event, T0 + k * 60 * NS_PER_S))
        assert book.ts_event[first] in set(kept.ts_event.tolist())
    assert len(kept) < len(book)


async def test_rows_held_between_decisions_reach_the_engine_before_the_next_decision() -> None:
    book = make_book(minutes=4)
    engine = ExecutionEngine()
    svc = AgentService(engine, sink=MemorySink(MemoryBus()), metrics=metrics(), clock=None,
                       md_feed=FileFeed(book, batch_rows=10), settings=ServiceSection(md_buffer_rows=10_000))
    seen: list[int] = []
    decided: list[int] = []
    real = engine.on_book

    def spy(batch, **kw):  # type: ignore[no-untyped-def]
        seen.append(len(batch))
        result = real(batch, **kw)
        decided.extend(c.period_index for c in result.children)
        return result

    engine.on_book = spy  # type: ignore[method-assign]
    async with svc:
        await svc.submit(ParentOrder("P", "FROG", "buy", 500.0, T0 + 60 * NS_PER_S, T0 + 240 * NS_PER_S))
        await svc.run(until_idle=True)
    assert sum(seen) == len(book)  # every row reached the engine (the tail by the final flush)
    assert len(seen) < len(book) / 10 / 2  # far fewer engine calls than batches
    assert decided == [0, 1, 2]


def test_chunks_split_rows_at_the_active_parents_period_boundaries() -> None:
    book = make_book(minutes=5)
    engine = ExecutionEngine()
    engine.submit(ParentOrder("P", "FROG", "buy", 1000.0, T0 + 30 * NS_PER_S, T0 + 300 * NS_PER_S))
    svc = AgentService(engine, sink=MemorySink(MemoryBus()), metrics=metrics())
    chunks = svc.driver.driver.chunks(book, "FROG")
    starts = [int(c.ts_event[0]) for c in chunks[1:]]
    assert starts == [T0 + (30 + 60 * k) * NS_PER_S for k in range(1, 5)]
    assert sum(len(c) for c in chunks) == len(book)


async def test_watchdog_flags_and_counts_a_silent_feed() -> None:
    m = metrics()
    bus = MemoryBus()
    svc = AgentService(ExecutionEngine(), sink=MemorySink(bus), metrics=m,
                       source=MemorySource(bus, [TOPICS.md]),
                       settings=ServiceSection(watchdog_interval_ms=10, no_data_alarm_s=0.03))
    async with svc:
        await asyncio.sleep(0.15)
        assert m.registry.get_sample_value("mpc_agent_feed_stale") == 1.0
        assert svc.health()[1]["md_stale"] is True
    assert m.registry.get_sample_value("mpc_agent_no_data_alarms_total") == 1.0


async def test_request_stop_ends_run_and_stop_is_idempotent_and_closes_everything() -> None:
    bus = MemoryBus()
    source = MemorySource(bus, [TOPICS.md])
    sink = MemorySink(bus)
    svc = AgentService(ExecutionEngine(), sink=sink, metrics=metrics(), source=source,
                       settings=ServiceSection(poll_timeout_ms=20))
    await svc.start()
    assert svc.health()[0] is True
    runner = asyncio.create_task(svc.run())
    await asyncio.sleep(0.05)
    svc.request_stop()
    await asyncio.wait_for(runner, 2.0)
    await svc.stop()
    await svc.stop()
    assert svc.health()[0] is False
    assert not svc._tasks and not svc.runner.running and svc.driver.held_rows == 0
    with pytest.raises(Exception, match="before start"):
        await source.getmany()


FROG = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"


def test_cli_run_file_feed_writes_child_orders_and_fills_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.app.cli import main

    if not FROG.exists():
        pytest.fail(f"{FROG} missing (../shared/data beside the clone)")
    monkeypatch.chdir(tmp_path)
    # the agent process tunes its garbage collector once its service started: recorded, not done to pytest's
    import agent.app.gc_tuning as gc_tuning

    calls: list[str] = []
    monkeypatch.setattr(gc_tuning, "_tuned", False)
    monkeypatch.setattr(gc_tuning.gc, "freeze", lambda: calls.append("freeze"))
    out = tmp_path / "live" / "child.jsonl"
    rc = main(["run", "--feed", "file", "--data", str(FROG), "--speed", "0", "--side", "buy",
               "--quantity", "1000", "--start", "10:00", "--end", "10:20", "--out", str(out),
               "--metrics-port", "0"])
    assert rc == 0
    assert calls == ["freeze"]
    summary = json.loads(capsys.readouterr().out)
    children = [codec.decode(line.encode()) for line in out.read_text().splitlines()]
    fills = [codec.decode(line.encode()) for line in (tmp_path / "live" / "fills.jsonl").read_text().splitlines()]
    # one child per period at most (the reverting forecast skips a period whose book is dear)
    assert len(children) == summary["child_orders"] and 10 <= len(children) <= 20
    ids = {c.child_order_id for c in children}
    assert len(ids) == len(children) and ids <= {f"P1:{k}" for k in range(20)}
    assert sum(f.quantity for f in fills) == pytest.approx(summary["parents"]["P1"]["filled"])
    assert summary["parents"]["P1"]["filled"] == pytest.approx(1000.0)


def test_cli_run_print_config_masks_secrets(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.app.cli import main

    monkeypatch.setenv("MPC_AGENT_KAFKA__SASL_PASSWORD", "s3cret-value")
    assert main(["run", "--print-config", "--feed", "file"]) == 0
    text = capsys.readouterr().out
    cfg = json.loads(text)
    assert cfg["service"]["feed"] == "file" and "s3cret-value" not in text
    assert cfg["kafka"]["sasl_password"] == "**********"


async def test_stop_gives_up_on_a_hanging_sink_after_shutdown_timeout() -> None:
    class HangingSink(MemorySink):
        async def stop(self) -> None:
            await asyncio.sleep(60)

    svc = AgentService(ExecutionEngine(), sink=HangingSink(MemoryBus()), metrics=metrics(),
                       settings=ServiceSection(shutdown_timeout_s=0.1))
    await svc.start()
    await asyncio.wait_for(svc.stop(), 2.0)
    assert not svc.runner.running


async def test_stop_closes_the_sink_even_when_the_source_stop_raises_an_internal_cancellation() -> None:
    """aiokafka's consumer.stop() re-raises its fetch task's cancellation when the broker is gone."""
    bus = MemoryBus()

    class BrokenSource(MemorySource):
        async def stop(self) -> None:
            await super().stop()
            raise asyncio.CancelledError

    sink = MemorySink(bus)
    svc = AgentService(ExecutionEngine(), sink=sink, metrics=metrics(), topics=TOPICS,
                       source=BrokenSource(bus, [TOPICS.parent_orders]))
    await svc.start()
    await svc.stop()  # must neither raise nor leave the producer open
    assert sink._started is False
