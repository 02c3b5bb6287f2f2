"""Crash recovery, exactly once (issue 7 item 3): SIGKILL a real agent process ten times mid-order.

A buy parent order (1 s periods) executes against a live synthetic market on
the real broker (wall-clock stamped books, a venue filling every committed
child order). The agent process (``python -m agent run``, exactly-once mode)
is killed with SIGKILL at seeded random moments and restarted each time.
Afterwards, reading the child-orders topic with ``read_committed``: no
``child_order_id`` twice, total child quantity <= parent quantity, the parent
completed; and at every restart the remaining quantity the agent restored
equals the one in the last committed state record before the kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from pathlib import Path

import aiokafka
import pytest

from agent.core.model import NS_PER_S, ParentOrder
from agent.live.fencing import transactional_id
from agent.live.settings import TopicsSection
from agent.live.state_topic import read_state
from feeds.kafka import KafkaConnection, KafkaSink, create_topics
from feeds.wire import codec
from tests.integration.agent_process import AgentProcess, Market, Venue, agent_env
from tests.integration.kafka_helpers import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.xdist_group("kafka_processes")]

KILLS = 10
QTY = 1200.0
PERIODS = 80  # 10 kill cycles take 30-60 s on a loaded 2-core box; the parent must outlast them
SEED = 20250403


def make_topics(tag: str) -> TopicsSection:
    return TopicsSection(md=f"md.{tag}", parent_orders=f"parents.{tag}", child_orders=f"children.{tag}",
                         fills=f"fills.{tag}", agent_state=f"state.{tag}", dlq=f"dlq.{tag}")


async def setup_topics(conn: KafkaConnection, t: TopicsSection, partitions: int) -> None:
    await create_topics(conn, [t.md, t.parent_orders, t.fills], partitions)
    await create_topics(conn, [t.child_orders, t.dlq], partitions)
    await create_topics(conn, [t.agent_state], partitions, compacted=True)


def state_reader(conn: KafkaConnection):  # type: ignore[no-untyped-def]
    return lambda isolation: aiokafka.AIOKafkaConsumer(**conn.client_kwargs(), group_id=None,
                                                       enable_auto_commit=False, isolation_level=isolation,
                                                       auto_offset_reset="earliest")


async def publish_parents(conn: KafkaConnection, topic: str, parents: list[ParentOrder]) -> None:
    async with KafkaSink(conn) as sink:
        for p in parents:  # key = symbol: the parent lands on its symbol's partition
            await sink.send(topic, codec.encode(codec.parent_from_model(p)), key=p.symbol.encode())


async def wait_for(cond, what: str, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def check_children(records: list[aiokafka.ConsumerRecord], parents: list[ParentOrder]) -> dict[str, float]:  # type: ignore[type-arg]
    """No duplicate child_order_id, per-parent quantity <= parent quantity; returns quantity per parent."""
    children = [json.loads(r.value) for r in records]
    dup = [cid for cid, n in Counter(c["child_order_id"] for c in children).items() if n > 1]
    assert not dup, f"duplicate child orders: {dup}"
    sent: dict[str, float] = {p.parent_id: 0.0 for p in parents}
    for c in children:
        sent[c["parent_id"]] += c["quantity"]
    for p in parents:
        assert sent[p.parent_id] <= p.quantity + 1e-9, (p.parent_id, sent[p.parent_id])
    return sent


def test_crash_recovery_ten_sigkills_no_duplicate_no_loss_parent_completes(kafka_bootstrap: str,
                                                                           tmp_path: Path) -> None:
    asyncio.run(_crash_scenario(kafka_bootstrap, tmp_path))


async def _crash_scenario(bootstrap: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = make_topics(tag)
    conn = KafkaConnection(bootstrap_servers=bootstrap, client_id=f"test-{tag}", request_timeout_ms=5000)
    await setup_topics(conn, topics, 2)
    start = time.time_ns() + 6 * NS_PER_S
    parent = ParentOrder(f"C-{tag}", "FROG", "buy", QTY, start, start + PERIODS * NS_PER_S, period_s=1.0)
    agent = AgentProcess(agent_env(bootstrap, topics, agent_id=f"crash-{tag}", group_id=f"g-{tag}"),
                         tmp_path / "agent.log")
    rng = random.Random(SEED)
    checks: list[tuple[float, float]] = []
    t0 = time.monotonic()
    try:
        async with Market(conn, topics.md, ["FROG"]), Venue(conn, topics) as venue:
            await publish_parents(conn, topics.parent_orders, [parent])
            agent.start()
            await wait_for(lambda: agent.assigned_count() >= 1, "the first assignment", 60)

            async def executing() -> None:  # every kill hits a parent being executed
                while True:
                    rec = (await read_state(state_reader(conn), topics.agent_state)).get(parent.parent_id)
                    if rec is not None and (rec["engine"]["next_period"] - 1) >= 0:
                        return
                    await asyncio.sleep(0.2)

            await asyncio.wait_for(executing(), 30)
            for kill in range(KILLS):
                await asyncio.sleep(rng.uniform(1.0, 3.0))
                assert agent.alive, agent.log_text()[-3000:]
                agent.kill()
                # the last committed state: up to the last stable offset (the killed agent's open
                # transaction, if any, starts there and is aborted by its successor)
                state = await read_state(state_reader(conn), topics.agent_state, wait_stable=False)
                before = state.get(parent.parent_id)
                n_restores = len(agent.restores())
                agent.start()
                await wait_for(lambda n=kill + 2: agent.assigned_count() >= n, f"assignment after kill {kill + 1}", 60)
                if before is not None:
                    restored = agent.restores()[n_restores:]
                    assert [r["parent_id"] for r in restored] == [parent.parent_id]
                    checks.append((before["remaining"], restored[0]["remaining"]))
                    assert restored[0]["remaining"] == before["remaining"]
                    assert restored[0]["next_period"] == before["engine"]["next_period"]
            t_kills = time.monotonic() - t0

            async def done() -> dict:  # type: ignore[type-arg]
                while True:
                    rec = (await read_state(state_reader(conn), topics.agent_state)).get(parent.parent_id)
                    if rec is not None and rec["status"] != "active":
                        return rec
                    await asyncio.sleep(1.0)

            final = await asyncio.wait_for(done(), (parent.end_ns - time.time_ns()) / NS_PER_S + 30)
            agent.stop()
            children = await read_topic(conn, topics.child_orders)
        sent = check_children(children, [parent])
        assert final["status"] == "completed", final
        assert final["remaining"] == 0.0 and final["filled_quantity"] == pytest.approx(QTY)
        assert sent[parent.parent_id] == pytest.approx(QTY)
        assert sum(venue.filled.values()) == pytest.approx(QTY)
        assert len(checks) == KILLS, checks
        print(f"\ncrash recovery: {KILLS} SIGKILLs survived in {t_kills:.1f} s, {len(children)} child orders, "
              f"0 duplicates, {sent[parent.parent_id]:.0f}/{QTY:.0f} shares, restored remaining checks: {checks}, "
              f"total {time.monotonic() - t0:.1f} s")
    finally:
        agent.kill()


def test_fenced_transaction_rebuilds_the_service_from_the_state_topic(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A real broker-side transaction failure: another producer takes the agent's transactional id (of its one partition)
    (ProducerFenced on the agent's next commit). The agent process rebuilds its service from the state
    topic (no exit), restores the last committed remaining quantity and completes without duplicates."""
    asyncio.run(_fenced_scenario(kafka_bootstrap, tmp_path))


async def _fenced_scenario(bootstrap: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = make_topics(tag)
    conn = KafkaConnection(bootstrap_servers=bootstrap, client_id=f"test-{tag}", request_timeout_ms=5000)
    await setup_topics(conn, topics, 1)
    start = time.time_ns() + 4 * NS_PER_S
    qty, periods = 600.0, 20
    parent = ParentOrder(f"F-{tag}", "FROG", "sell", qty, start, start + periods * NS_PER_S, period_s=1.0)
    agent = AgentProcess(agent_env(bootstrap, topics, agent_id=f"fence-{tag}", group_id=f"g-{tag}"),
                         tmp_path / "agent.log")
    try:
        async with Market(conn, topics.md, ["FROG"]), Venue(conn, topics):
            await publish_parents(conn, topics.parent_orders, [parent])
            agent.start()

            async def state(pred) -> dict:  # type: ignore[no-untyped-def, type-arg]
                while True:
                    rec = (await read_state(state_reader(conn), topics.agent_state)).get(parent.parent_id)
                    if rec is not None and pred(rec):
                        return rec
                    await asyncio.sleep(0.3)

            await asyncio.wait_for(state(lambda r: (r["engine"]["next_period"] - 1) >= 3), 60)
            # the transactional id of the agent's producer for partition 0 (its only partition)
            fencer = aiokafka.AIOKafkaProducer(**conn.client_kwargs(), enable_idempotence=True,
                                               transactional_id=transactional_id(f"g-{tag}", topics.parent_orders, 0))
            await fencer.start()  # InitProducerId bumps the epoch: the agent's producer is fenced
            before = await read_state(state_reader(conn), topics.agent_state, wait_stable=False)
            await wait_for(lambda: "rebuilding from the state topic" in agent.log_text(), "a rebuild", 30)
            await wait_for(lambda: len(agent.restores()) >= 1, "the restore after the rebuild", 30)
            restored = agent.restores()[0]
            final = await asyncio.wait_for(state(lambda r: r["status"] != "active"), periods + 30)
            with contextlib.suppress(Exception):
                await fencer.stop()
            assert agent.alive and agent.starts == 1, "the process itself must not have exited"
            agent.stop()
            children = await read_topic(conn, topics.child_orders)
        sent = check_children(children, [parent])
        # the agent is fenced from the fencer's InitProducerId on: the last committed state is the one read
        # right after it
        assert restored["remaining"] == before[parent.parent_id]["remaining"]
        assert final["status"] == "completed" and sent[parent.parent_id] == pytest.approx(qty)
        print(f"\nfenced: service rebuilt in process, restored remaining {restored['remaining']:.0f}, "
              f"{len(children)} child orders, 0 duplicates, {sent[parent.parent_id]:.0f}/{qty:.0f} shares")
    finally:
        agent.kill()
