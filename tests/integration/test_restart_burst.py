"""The restart burst under the event clock (issue 13 item 4): a replayed backlog decides exactly as a replay.

``service.clock = "event"`` is for historical data published into Kafka: the
snapshot age is measured in event time, so a backlog is not "stale" and every
period in it is decided, in a burst, as fast as the agent reads. That burst
is the replay itself: this test proves it decides exactly what
:class:`agent.core.driver.Driver` decides over the same rows.

A real agent process (exactly once, event clock) works a 300-period parent
order on the sample's SYNA day (60 s periods, no fills: fills arriving
through Kafka are applied when they are consumed, which in a backlog is not
where a simulator would put them). It reads the first 60 periods, is killed
(SIGKILL), the rows up to period 200 are published while it is down, it is
restarted on that backlog and killed once more while it works it or waits
at its end, and the rest of the day's rows are published before it starts a third
time. (The backlog comes in two parts so that the second kill lands before
the last decision however fast the agent is.)
The committed child orders (read by an outside client) equal the driver's:
id, quantity, limit price, triggering snapshot and remaining exactly (what is
sent); the impact estimates to 1e-9 relative (the estimators sum in another
order when rows come in other batches: the last bits differ); the plan to the
solver's tolerance (OSQP ``eps_rel`` 1e-3: a restarted agent warm-starts the
QP from the recorded plan, not from OSQP's internal iterates, so where
polishing does not finish exactly the approximate optimum differs slightly);
``ts_init`` is the wall clock.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.app.builder import build_engine
from agent.app.config import AgentConfig
from agent.core.driver import Driver
from agent.core.model import NS_PER_S, ParentOrder
from agent.live.state_topic import read_state
from feeds.file_feed import encode_rows
from feeds.files.readers import read_book
from feeds.kafka import KafkaConnection, KafkaSink
from tests.integration.agent_process import AgentProcess, agent_env
from tests.integration.outside import read_committed
from tests.integration.test_crash_recovery import (
    make_topics,
    publish_parents,
    setup_topics,
    state_reader,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "sample-2025-04-03.mbp10.csv.zst"
PERIODS = 300
FIRST = 60  # periods read before the first kill
SECOND = 200  # the first part of the backlog ends at this period's start
# The EWMA forecast: its whole state is in the crash record. The reverting forecast keeps its sampled
# book rows in memory only, so after a restart it re-plans from a shorter history (not exact).
EXACT = ("child_order_id", "quantity", "limit_price", "ts_event", "remaining_before", "period_index")


def reference(book: Any, parent: ParentOrder) -> list[dict[str, Any]]:
    """The driver's child orders over ``book`` (engine as ``mpc-agent run`` builds it, no venue)."""
    engine = build_engine(AgentConfig(engine={"forecast": "ewma"}))
    engine.submit(parent)
    res = Driver(engine, venue=None, clock=None).feed(book, parent.symbol)
    return [{"child_order_id": c.child_order_id, "quantity": c.quantity, "limit_price": c.limit_price,
             "ts_event": c.ts_event, "remaining_before": c.remaining_before, "period_index": c.period_index,
             "plan": list(c.plan), "impact": {"beta": c.impact.beta, "gamma": c.impact.gamma} if c.impact else None}
            for c in res.children]


async def publish_backlog(conn: KafkaConnection, rows: Any, topic: str) -> None:
    async with KafkaSink(conn) as sink:
        records = encode_rows(rows, topic)
        for i in range(0, len(records), 5000):
            await sink.send_many(records[i:i + 5000])


@pytest.mark.parametrize("runner", ["thread", "loop"])
def test_event_clock_backlog_after_restarts_decides_exactly_as_the_driver(kafka_bootstrap: str, tmp_path: Path,
                                                                          runner: str) -> None:
    """(Also with the engine on the event loop: ``service.engine_runner = "loop"``.)"""
    asyncio.run(_burst_scenario(kafka_bootstrap, tmp_path, runner))


async def _burst_scenario(bootstrap: str, tmp_path: Path, runner: str) -> None:
    book = read_book([SAMPLE], symbol="SYNA").batch
    t0 = int(book.ts_event[0])
    start = (t0 // (60 * NS_PER_S) + 5) * 60 * NS_PER_S
    parent = ParentOrder("BURST-1", "SYNA", "buy", 30_000.0, start, start + PERIODS * 60 * NS_PER_S, period_s=60.0)
    book = book[: int(np.searchsorted(book.ts_event, parent.end_ns))]
    ref = reference(book, parent)
    cut = int(np.searchsorted(book.ts_event, parent.period_start_ns(FIRST)))
    second = int(np.searchsorted(book.ts_event, parent.period_start_ns(SECOND)))
    tag = uuid.uuid4().hex[:8]
    topics = make_topics(tag)
    conn = KafkaConnection(bootstrap_servers=bootstrap, client_id=f"test-{tag}", request_timeout_ms=10000)
    await setup_topics(conn, topics, 1)
    agent = AgentProcess(agent_env(bootstrap, topics, agent_id=f"burst-{tag}", group_id=f"g-{tag}",
                                   extra={"MPC_AGENT_SERVICE__CLOCK": "event",
                                          "MPC_AGENT_SERVICE__ENGINE_RUNNER": runner,
                                          "MPC_AGENT_ENGINE__FORECAST": "ewma"}), tmp_path / "agent.log")

    async def next_period() -> int:
        rec = (await read_state(state_reader(conn), topics.agent_state, wait_stable=False)).get(parent.parent_id)
        return -1 if rec is None else int(rec["engine"]["next_period"])

    async def reach(k: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while await next_period() < k:
            assert agent.alive, agent.log_text()[-3000:]
            assert time.monotonic() < deadline, f"next_period {await next_period()} < {k} after {timeout_s} s"
            await asyncio.sleep(0.2)

    try:
        await publish_parents(conn, topics.parent_orders, [parent])
        async with KafkaSink(conn) as sink:
            await sink.send_many(encode_rows(book[:cut], topics.md))
        agent.start()
        await reach(FIRST, 120)
        agent.kill()
        await publish_backlog(conn, book[cut:second], topics.md)  # while the agent is down
        agent.start()
        await reach(FIRST + (SECOND - FIRST) // 2, 180)  # well into the burst
        agent.kill()
        k_second = await next_period()
        await publish_backlog(conn, book[second:], topics.md)
        agent.start()
        await wait_for(lambda: agent.assigned_count() >= 3, "the third assignment", 60)
        await reach(int(ref[-1]["period_index"]) + 1, 300)
        agent.stop()
        children = [m.json() for m in await asyncio.to_thread(read_committed, bootstrap, topics.child_orders)]
    finally:
        agent.kill()
    live = sorted(children, key=lambda c: c["period_index"])
    def rel(pairs: list[tuple[float, float]]) -> float:
        return max((abs(a - b) / max(abs(b), 1e-300) for a, b in pairs), default=0.0)

    pairs = list(zip(live, ref, strict=False))
    rel_impact = rel([(x["impact"][k], y["impact"][k]) for x, y in pairs for k in ("beta", "gamma")])
    rel_plan = rel([ab for x, y in pairs for ab in zip(x["plan"], y["plan"], strict=True)])
    same = [{f: c[f] for f in EXACT} for c in live] == [{f: c[f] for f in EXACT} for c in ref]
    restores = agent.restores()
    print(f"\nrestart burst (event clock): {len(book):,} rows, {len(book) - cut:,} of them a backlog read after a "
          f"restart; killed before the backlog (next period {FIRST}) and in the burst (next period {k_second}); "
          f"restored next periods {[r['next_period'] for r in restores]}; {len(live)} child orders committed, "
          f"driver {len(ref)}; orders equal: {same}; max relative difference impact {rel_impact:.1e}, "
          f"plan {rel_plan:.1e}")
    assert len(restores) == 2 and k_second <= SECOND < ref[-1]["period_index"]  # decisions left after the 2nd restart
    assert [c["child_order_id"] for c in live] == [c["child_order_id"] for c in ref]
    assert same
    assert rel_impact <= 1e-9
    assert rel_plan <= 1e-3
