"""Exactly once on a real broker: market data that decides nothing opens no transaction per step.

The service (built as ``mpc-agent run`` builds it) reads market data of a
symbol without parent orders, in many steps. With ``kafka.idle_offsets_commit_ms``
long, its steps commit nothing until it stops, when the waiting offsets are
committed; short, an empty step commits them soon after the data stop while
the service keeps running; 0, every step commits its own offsets (one
transaction each). The group's committed offset is read by an outside client
(librdkafka), not the agent's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import CollectorRegistry

from agent.app.builder import build_kafka_service, ensure_topics
from agent.app.config import AgentConfig
from agent.core.engine import ExecutionEngine
from agent.live.metrics import AgentMetrics, ReliabilityMetrics
from agent.live.settings import KafkaSection, ServiceSection, TopicsSection
from feeds.file_feed import encode_rows
from feeds.files.readers import read_book
from feeds.kafka import KafkaConnection, KafkaSink

pytestmark = [pytest.mark.kafka]

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "sample-2025-04-03.mbp10.csv.zst"
CHUNKS, ROWS = 12, 40


def _committed(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offset of ``topic``'s partition 0 (-1: none), read through librdkafka."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        (tp,) = c.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset) if tp.offset >= 0 else -1
    finally:
        c.close()


async def _run(bootstrap: str, idle_ms: float) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    topics = TopicsSection(md=f"md.{tag}", parent_orders=f"parents.{tag}", child_orders=f"children.{tag}",
                           fills=f"fills.{tag}", agent_state=f"state.{tag}", dlq=f"md.{tag}.dlq")
    group = f"idle-{tag}"
    cfg = AgentConfig(topics=topics,
                      service=ServiceSection(clock="event", poll_timeout_ms=10, market_state_interval_s=10.0),
                      kafka=KafkaSection(bootstrap_servers=bootstrap, group_id=group, agent_id=group,
                                         exactly_once=True, idle_offsets_commit_ms=idle_ms))
    conn = KafkaConnection(bootstrap_servers=bootstrap, client_id=f"test-{tag}")
    await ensure_topics(conn, cfg)
    metrics = AgentMetrics.create(CollectorRegistry())
    built = build_kafka_service(cfg, conn, metrics, ReliabilityMetrics.create(metrics.registry),
                                engine=ExecutionEngine(clock=time.time_ns))
    svc = built.service
    steps: list[object] = []
    svc.on_step = steps.append
    book = read_book(SAMPLE).batch[: CHUNKS * ROWS]
    out: dict[str, float] = {}
    async with svc, KafkaSink(conn) as market:
        task = asyncio.create_task(svc.run(), name="agent")
        while not svc.health()[0]:
            await asyncio.sleep(0.02)
        last = int(book.ts_event[-1])
        for k in range(CHUNKS):  # one step or more each: the next chunk once the agent has this one
            chunk = book[k * ROWS:(k + 1) * ROWS]
            await market.send_many(encode_rows(chunk, topics.md))
            while max(svc.processed_ts.values(), default=0) < int(chunk.ts_event[-1]):
                await asyncio.sleep(0.01)
        assert max(svc.processed_ts.values()) == last
        t_done = time.monotonic()
        out["steps"] = len(steps)
        out["txn_at_end_of_data"] = svc.metrics.registry.get_sample_value(
            "mpc_agent_transactions_total", {"outcome": "committed"}) or 0.0
        out["committed_at_end_of_data"] = await asyncio.to_thread(_committed, bootstrap, group, topics.md)
        out["committed_while_running_after_s"] = -1.0
        while time.monotonic() - t_done < 3.0:
            if await asyncio.to_thread(_committed, bootstrap, group, topics.md) == len(book):
                out["committed_while_running_after_s"] = time.monotonic() - t_done
                break
            await asyncio.sleep(0.05)
        svc.request_stop()
        await asyncio.wait_for(task, 20)
    out["committed_after_stop"] = await asyncio.to_thread(_committed, bootstrap, group, topics.md)
    out["rows"] = len(book)
    return out


def test_waiting_offsets_commit_at_stop(kafka_bootstrap: str) -> None:
    r = asyncio.run(_run(kafka_bootstrap, 600_000.0))
    assert r["steps"] >= CHUNKS  # many steps...
    assert r["txn_at_end_of_data"] <= 2  # ...no transaction each (the symbol's first market record at most)
    assert r["committed_at_end_of_data"] < r["rows"]
    assert r["committed_while_running_after_s"] == -1.0  # still waiting 3 s later
    assert r["committed_after_stop"] == r["rows"]  # nothing lost: committed when the service stops


def test_waiting_offsets_commit_soon_on_a_quiet_feed(kafka_bootstrap: str) -> None:
    r = asyncio.run(_run(kafka_bootstrap, 300.0))
    assert r["txn_at_end_of_data"] <= r["steps"] / 3  # not one a step
    assert 0.0 <= r["committed_while_running_after_s"] < 2.0  # an empty step committed them (0.3 s + a step)
    assert r["committed_after_stop"] == r["rows"]


def test_no_wait_commits_every_step(kafka_bootstrap: str) -> None:
    r = asyncio.run(_run(kafka_bootstrap, 0.0))
    assert r["txn_at_end_of_data"] >= r["steps"] - 1  # each step that read market data committed it
    assert r["committed_at_end_of_data"] == r["rows"]
