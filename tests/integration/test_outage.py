"""Broker outage (issue 7 item 4): the broker stops for ~20 s in the middle of a parent order.

The test owns a private broker (``scripts/kafka-local`` with its own
``KAFKA_LOCAL_DIR``; ``pause`` stops the process and keeps its ports and data,
``resume`` starts it again on the same port), so the session broker of the
other tests is not disturbed. A real agent process executes a buy parent order
(1 s periods) against a live synthetic market; the broker is paused for
``OUTAGE_S`` and resumed. Checks: the agent process survives and reconnects;
no child order was created during the outage or decided on a book older than
``max_snapshot_age_ms`` (books stamped during the outage are published
late, right after it, and must not trigger orders); no duplicate child order id, total quantity == parent quantity, the
parent completed; ``/metrics`` showed ``mpc_agent_broker_up 0`` during the
outage and counts the outage seconds; the agent's log holds each complaint
once for the outage (no line repeated per retry or rebuild attempt).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from agent.core.model import NS_PER_S, ParentOrder
from agent.live.state_topic import read_state
from feeds.kafka import KafkaConnection, KafkaSink
from feeds.ports import OutRecord
from feeds.wire import codec
from tests.integration.agent_process import (
    AgentProcess,
    Market,
    Venue,
    agent_env,
    book_row,
)
from tests.integration.kafka_helpers import PrivateBroker, free_port, read_topic
from tests.integration.test_crash_recovery import (
    check_children,
    make_topics,
    publish_parents,
    setup_topics,
    state_reader,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

OUTAGE_S = 20.0
QTY = 1000.0
PERIODS = 50
MAX_AGE_S = 2.0  # risk.max_snapshot_age_ms default


async def scrape(port: int) -> dict[str, float]:
    """``/metrics`` samples without labels (name -> value); empty when the endpoint does not answer."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2.0)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
    except (OSError, TimeoutError):
        return {}
    out: dict[str, float] = {}
    for line in data.decode(errors="replace").split("\r\n\r\n", 1)[-1].splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


def outage_lines(agent: AgentProcess, t0: float, t1: float) -> list[str]:
    """WARNING/ERROR lines logged between ``t0`` and ``t1`` (epoch s), numbers and ids masked."""
    out = []
    for t, line in agent.log_events(" "):
        if t0 <= t <= t1 and (" WARNING " in line or " ERROR " in line):
            out.append(re.sub(r"\d+(\.\d+)?", "N", line[24:])[:160])
    return out


def test_broker_outage_20s_agent_reconnects_no_stale_orders_no_loss(
        private_broker: tuple[PrivateBroker, str], tmp_path: Path) -> None:
    asyncio.run(_outage_scenario(*private_broker, tmp_path))


async def _outage_scenario(broker: PrivateBroker, bootstrap: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = make_topics(tag)
    conn = KafkaConnection(bootstrap_servers=bootstrap, client_id=f"test-{tag}", request_timeout_ms=5000)
    await setup_topics(conn, topics, 2)
    start = time.time_ns() + 6 * NS_PER_S
    parent = ParentOrder(f"O-{tag}", "FROG", "buy", QTY, start, start + PERIODS * NS_PER_S, period_s=1.0)
    port = free_port()
    agent = AgentProcess(agent_env(bootstrap, topics, agent_id=f"out-{tag}", group_id=f"g-{tag}",
                                   metrics_port=port), tmp_path / "agent.log")
    t0 = time.monotonic()
    try:
        async with Market(conn, topics.md, ["FROG"]), Venue(conn, topics):
            await publish_parents(conn, topics.parent_orders, [parent])
            agent.start()

            async def executing(k: int) -> None:
                while True:
                    rec = (await read_state(state_reader(conn), topics.agent_state)).get(parent.parent_id)
                    if rec is not None and (rec["engine"]["next_period"] - 1) >= k:
                        return
                    await asyncio.sleep(0.5)

            await asyncio.wait_for(executing(5), 60)
            await asyncio.to_thread(broker.run, "pause")
            t_down = time.time_ns()
            during: list[dict[str, float]] = []
            while time.time_ns() - t_down < OUTAGE_S * NS_PER_S:
                during.append(await scrape(port))
                assert agent.alive, agent.log_text()[-3000:]
                await asyncio.sleep(2.0)
            t_up = time.time_ns()  # the broker is certainly down between t_down and t_up
            await asyncio.to_thread(broker.run, "resume")
            outage_s = (time.time_ns() - t_down) / NS_PER_S
            # books from the outage delivered late (what a buffering upstream would do): they span
            # several period starts and must not trigger any order
            stale = [book_row("FROG", t_down + i * NS_PER_S // 4, i, 10.0) for i in range(40)]
            async with KafkaSink(conn) as late:
                await late.send_many([OutRecord(topics.md, codec.encode(m), key=b"FROG") for m in stale])

            async def done() -> dict:  # type: ignore[type-arg]
                while True:
                    rec = (await read_state(state_reader(conn), topics.agent_state)).get(parent.parent_id)
                    if rec is not None and rec["status"] != "active":
                        return rec
                    await asyncio.sleep(1.0)

            final = await asyncio.wait_for(done(), (parent.end_ns - time.time_ns()) / NS_PER_S + 30)
            after = await scrape(port)
            assert agent.alive, agent.log_text()[-3000:]
            agent.stop()
            records = await read_topic(conn, topics.child_orders)
        sent = check_children(records, [parent])
        assert final["status"] == "completed", final
        assert sent[parent.parent_id] == pytest.approx(QTY)
        ages = []
        for r in records:
            child = json.loads(r.value)
            created_ns = r.timestamp_ms * 1_000_000
            assert not (t_down < created_ns < t_up), f"child order created during the outage: {child}"
            ages.append((created_ns - child["ts_event"]) / NS_PER_S)
            assert not (t_down <= child["ts_event"] <= t_up), f"child order decided on an outage book: {child}"
        assert max(ages) <= MAX_AGE_S + 0.5, f"a child order was decided on a stale book: {max(ages):.3f} s"
        lines = outage_lines(agent, t_down / NS_PER_S, t_up / NS_PER_S + 15)
        repeated = {k: n for k, n in Counter(lines).items() if n > 1}
        assert not repeated, f"log lines repeated during one outage: {repeated}"
        assert any(m.get("mpc_agent_broker_up") == 0.0 for m in during), during
        assert after["mpc_agent_broker_up"] == 1.0
        assert after["mpc_agent_broker_outage_seconds_total"] >= OUTAGE_S - 5
        print(f"\noutage: broker down {outage_s:.1f} s; agent survived; {len(records)} child orders, 0 duplicates, "
              f"{sent[parent.parent_id]:.0f}/{QTY:.0f} shares, max decision book age {max(ages):.3f} s, "
              f"metrics outage {after['mpc_agent_broker_outage_seconds_total']:.0f} s, {len(lines)} warning/error "
              f"lines during it, none repeated; "
              f"total {time.monotonic() - t0:.1f} s")
    finally:
        agent.kill()
