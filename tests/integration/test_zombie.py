"""Zombie fencing (issue 13 item 1): a stalled agent commits nothing after another agent took its partitions.

Two real agent processes share a consumer group on two partitions (two
symbols each). Once every parent executes, the agent owning partition 0 is
stopped with SIGSTOP for ``STOP_S`` (well past the 6 s session timeout), so
the group gives its partition to the other agent, which restores its parents
and trades them; then it gets SIGCONT. Whatever it had fetched or had in
flight, it must not commit a single child order or state record for those
parents from the takeover (the survivor's assignment) until it is assigned
the partition again itself. Checked from outside with confluent-kafka
(``read_committed``); the child and state topics use ``LogAppendTime``, so
each record carries the broker's append time, and one segment, so compaction
removes nothing; every record names its writer (``mpc.agent_id`` header; ``agent_id`` in the state record). Also:
no child order id twice; per parent, in commit order, the state never goes
backwards (``next_period`` and ``filled_quantity`` non-decreasing: a stalled
agent that kept its old engine state and wrote it again would break it) and
child periods strictly increase; every parent completes with exactly its quantity.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from agent.core.model import NS_PER_S, ParentOrder
from agent.live.delivery import AGENT_HEADER
from agent.live.state_topic import parent_records, read_state, symbol_partition
from feeds.kafka import KafkaConnection, create_topics
from tests.integration.agent_process import AgentProcess, Market, Venue, agent_env
from tests.integration.outside import LOG_APPEND_TIME, Msg, read_committed
from tests.integration.test_crash_recovery import (
    make_topics,
    publish_parents,
    state_reader,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.xdist_group("kafka_processes")]

STOP_S = 15.0  # stalled for 2.5x the session timeout (6 s)
PERIODS = 45
QTY = 900.0
ASSIGNED = "Setting newly assigned partitions"


def symbols_by_partition(n_partitions: int, per_partition: int) -> list[str]:
    """``per_partition`` symbols on each partition (Kafka's default partitioner)."""
    out: dict[int, list[str]] = {p: [] for p in range(n_partitions)}
    i = 0
    while any(len(v) < per_partition for v in out.values()):
        sym = f"Z{i:03d}"
        p = symbol_partition(sym, n_partitions)
        if len(out[p]) < per_partition:
            out[p].append(sym)
        i += 1
    return [s for p in sorted(out) for s in out[p]]


def writer(m: Msg) -> str:
    """Who committed ``m``: the ``mpc.agent_id`` header, else the state record's ``agent_id``."""
    if AGENT_HEADER in m.headers:
        return m.headers[AGENT_HEADER].decode()
    return str((m.json() or {}).get("agent_id", ""))


def regressions(children: list[Msg], states: list[Msg]) -> list[str]:
    """Per parent, in offset order (one key, one partition): state going backwards, child periods not increasing."""
    out: list[str] = []
    last: dict[str, tuple[int, float]] = {}
    for m in sorted(states, key=lambda m: (m.partition, m.offset)):
        rec = m.json()
        if rec is None or rec.get("schema") != "agent_state.v1":  # tombstones, market and kill-switch records
            continue
        now = (int(rec["engine"]["next_period"]), float(rec["filled_quantity"]))
        before = last.get(rec["parent_id"])
        if before is not None and (now[0] < before[0] or now[1] < before[1] - 1e-9):
            out.append(f"state of {rec['parent_id']} went back from {before} to {now} at offset {m.offset} "
                       f"(writer {writer(m)})")
        last[rec["parent_id"]] = now
    period: dict[str, int] = {}
    for m in sorted(children, key=lambda m: (m.partition, m.offset)):
        c = m.json()
        if c["period_index"] <= period.get(c["parent_id"], -1):
            out.append(f"child {c['child_order_id']} after period {period[c['parent_id']]} (writer {writer(m)})")
        period[c["parent_id"]] = c["period_index"]
    return out


def test_stalled_agent_commits_nothing_after_the_takeover(kafka_bootstrap: str, tmp_path: Path) -> None:
    asyncio.run(_zombie_scenario(kafka_bootstrap, tmp_path))


async def _zombie_scenario(bootstrap: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = make_topics(tag)
    conn = KafkaConnection(bootstrap_servers=bootstrap, client_id=f"test-{tag}", request_timeout_ms=5000)
    await create_topics(conn, [topics.md, topics.parent_orders, topics.fills], 2)
    # one segment for the whole test: compaction must not remove the evidence (superseded state records)
    evidence = {**LOG_APPEND_TIME, "segment.bytes": str(1 << 30)}
    await create_topics(conn, [topics.child_orders, topics.dlq], 2, configs=evidence)
    await create_topics(conn, [topics.agent_state], 2, compacted=True, configs=evidence)
    symbols = symbols_by_partition(2, 2)
    start = time.time_ns() + 10 * NS_PER_S
    parents = [ParentOrder(f"Z{i}-{tag}", sym, "buy" if i % 2 else "sell", QTY, start,
                           start + PERIODS * NS_PER_S, period_s=1.0) for i, sym in enumerate(symbols)]
    agents = {f"z{i}-{tag}": AgentProcess(agent_env(bootstrap, topics, agent_id=f"z{i}-{tag}", group_id=f"g-{tag}"),
                                          tmp_path / f"agent{i}.log") for i in range(2)}
    try:
        async with Market(conn, topics.md, symbols, rate_hz=10.0), Venue(conn, topics):
            for a in agents.values():
                a.start()
            await publish_parents(conn, topics.parent_orders, parents)
            owners: dict[str, str] = {}

            async def executing() -> None:
                while True:
                    st = parent_records(await read_state(state_reader(conn), topics.agent_state))
                    if all(p.parent_id in st and st[p.parent_id]["engine"]["next_period"] >= 4 for p in parents):
                        owners.update({pid: r["agent_id"] for pid, r in st.items()})
                        return
                    await asyncio.sleep(0.3)

            await asyncio.wait_for(executing(), 60)
            assert len(set(owners.values())) == 2, f"both agents should own parents: {owners}"
            victim_id = owners[parents[0].parent_id]  # the owner of partition 0
            survivor_id = next(a for a in agents if a != victim_id)
            victim, survivor = agents[victim_id], agents[survivor_id]
            moved = {pid for pid, aid in owners.items() if aid == victim_id}
            n_before = len(survivor.restores())
            t_stop = time.time()
            victim.pause()
            await wait_for(lambda: moved <= {r["parent_id"] for r in survivor.restores()[n_before:]},
                           "the survivor restoring the stalled agent's parents", 40)
            t_restored = time.time()
            await asyncio.sleep(max(0.0, t_stop + STOP_S - time.time()))
            t_cont = time.time()
            victim.resume()

            async def done() -> dict:  # type: ignore[type-arg]
                while True:
                    st = await read_state(state_reader(conn), topics.agent_state)
                    if all(p.parent_id in st and st[p.parent_id]["status"] != "active" for p in parents):
                        return st
                    await asyncio.sleep(1.0)

            final = await asyncio.wait_for(done(), (start - time.time_ns()) / NS_PER_S + PERIODS + 40)
            for a in agents.values():
                assert a.alive, a.log_text()[-3000:]
                a.stop()
        children = await asyncio.to_thread(read_committed, bootstrap, topics.child_orders)
        states = await asyncio.to_thread(read_committed, bootstrap, topics.agent_state)
        # the takeover: the survivor's first assignment after the stop (before its producers fence the
        # victim); the victim's own re-assignment after SIGCONT ends the window (then it fences the survivor)
        t_takeover = min(t for t, _ in survivor.log_events(ASSIGNED) if t > t_stop)
        t_back = min([t for t, _ in victim.log_events(ASSIGNED) if t > t_cont], default=float("inf"))
        zombie = [m for m in children + states
                  if m.key is not None and m.key.decode() in moved and writer(m) == victim_id
                  and t_takeover * 1000 <= m.timestamp_ms < t_back * 1000]
        by_writer = Counter((m.topic, writer(m)) for m in children + states if m.key and m.key.decode() in moved)
        fenced = [line for t, line in victim.log_events("step transaction failed") if t > t_cont]
        ids = Counter(m.json()["child_order_id"] for m in children)
        dup = [cid for cid, n in ids.items() if n > 1]
        sent = Counter[str]()
        for m in children:
            sent[m.json()["parent_id"]] += m.json()["quantity"]
        print(f"\nzombie: {victim_id} stopped {t_cont - t_stop:.1f} s; its {len(moved)} parents restored by "
              f"{survivor_id} {t_restored - t_stop:.1f} s after the stop (takeover at +{t_takeover - t_stop:.1f} s); "
              f"after SIGCONT the stalled agent's transactions failed {len(fenced)} time(s) (fenced), it was "
              f"assigned again at +{t_back - t_stop:.1f} s; records of the moved parents by writer {dict(by_writer)}; "
              f"{len(zombie)} committed by the stalled agent in the window; {len(children)} child orders, "
              f"{len(dup)} duplicate ids, {len(regressions(children, states))} regressions")
        backwards = regressions(children, states)
        assert not zombie, [(m.topic, m.key, m.offset, m.timestamp_ms, m.json()) for m in zombie][:5]
        assert not backwards, backwards[:5]
        assert not dup, dup
        assert all(AGENT_HEADER in m.headers for m in children), "every child order names its writer"
        for p in parents:
            assert final[p.parent_id]["status"] == "completed", final[p.parent_id]
            assert sent[p.parent_id] == pytest.approx(QTY), (p.parent_id, sent[p.parent_id])
    finally:
        for a in agents.values():
            if a.alive:
                a.resume()
            a.kill()
