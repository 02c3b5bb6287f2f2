"""Operating the agent for real (issue 14 items 3-7): a real agent process on a real broker.

- The kill switch: turned on by a ``kill_switch.v1`` on the parent-orders topic, it stops child orders
  and holds the parent (not expired); ``/readyz`` says so, ``mpc_agent_kill_switch`` is 1; after a
  SIGKILL the restarted agent comes back with the switch on (state topic); ``POST /kill-switch`` needs
  the bearer token and turns it off; the parent then completes, with no duplicate child order.
- ``GET /parents`` during and after the parent; after ``service.ended_parent_retention_s`` the parent
  leaves ``/parents`` and the state topic (tombstone).
- Readiness during a broker outage (a private broker, paused): ``/readyz`` 503 naming ``broker``,
  ``/livez`` 200, back to 200 after the broker returns; aiokafka's reconnect errors come out as one
  line at the start of the outage and one with its duration at the end.
- 1,000 finished parents through the state topic: a restore reads none of them back as active, and
  after their retention none at all.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.core.engine import ExecutionEngine
from agent.core.model import NS_PER_S, Fill, ParentOrder
from agent.live.kill_switch import KILL_SWITCH_KEY
from agent.live.lifecycle import ParentLifecycle
from agent.live.state_topic import StateTracker, read_state, restore
from feeds.kafka import KafkaConnection, KafkaSink, create_topics
from feeds.ports import OutRecord
from tests.integration.agent_process import AgentProcess, Market, Venue, agent_env
from tests.integration.kafka_helpers import free_port, read_topic
from tests.integration.test_crash_recovery import (
    check_children,
    make_topics,
    publish_parents,
    setup_topics,
    state_reader,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOKEN = "ops-test-token-7d1c"
QTY = 3000.0


class Http:
    """The agent's HTTP endpoint (None status: it does not answer)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    async def get(self, path: str) -> tuple[int | None, Any]:
        try:
            async with aiohttp.ClientSession() as s, s.get(self.base + path,
                                                            timeout=aiohttp.ClientTimeout(total=3)) as r:
                return r.status, (await r.json() if r.content_type == "application/json" else await r.text())
        except (aiohttp.ClientError, TimeoutError):
            return None, None

    async def post_kill(self, on: bool, reason: str, token: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as s, s.post(self.base + "/kill-switch", json={"on": on, "reason": reason},
                                                         headers=headers) as r:
            return r.status, await r.json()

    async def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        status, text = await self.get("/metrics")
        if status != 200:
            return None
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and s.labels == (labels or {}):
                    return float(s.value)
        return None

    async def parent(self, pid: str) -> dict[str, Any] | None:
        """The parent's row of ``/parents`` (None when not listed, or while the agent starts)."""
        status, body = await self.get("/parents")
        if status in (None, 503):
            return None
        assert status == 200, (status, body)
        return next((r for r in body["parents"] if r["parent_id"] == pid), None)


async def until(cond: Callable[[], bool | Awaitable[bool]], what: str, timeout_s: float,
                agent: AgentProcess | None = None, interval_s: float = 0.25) -> float:
    """Wait for ``cond`` (sync or async); returns the seconds it took."""
    t0 = time.monotonic()

    async def check() -> bool:
        res = cond()
        return bool(await res) if inspect.isawaitable(res) else bool(res)

    while not await check():
        if time.monotonic() - t0 > timeout_s:
            tail = "" if agent is None else (f"\nagent exit code {agent.proc.poll() if agent.proc else None}:\n"
                                             + agent.log_text()[-4000:])
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{tail}")
        await asyncio.sleep(interval_s)
    return time.monotonic() - t0


def test_kill_switch_by_topic_survives_a_restart_post_turns_it_off_and_parents_are_listed(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    asyncio.run(_kill_switch_scenario(kafka_bootstrap, tmp_path))


async def _kill_switch_scenario(bootstrap: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = make_topics(tag)
    conn = KafkaConnection(bootstrap_servers=bootstrap, client_id=f"test-{tag}", request_timeout_ms=5000)
    await setup_topics(conn, topics, 1)
    port = free_port()
    http = Http(port)
    agent = AgentProcess(agent_env(bootstrap, topics, agent_id=f"ops-{tag}", group_id=f"g-{tag}", metrics_port=port,
                                   extra={"MPC_AGENT_HTTP__ADMIN_TOKEN": TOKEN,
                                          "MPC_AGENT_SERVICE__ENDED_PARENT_RETENTION_S": "8"}),
                         tmp_path / "agent.log")
    start = time.time_ns() + 3 * NS_PER_S
    parent = ParentOrder(f"K-{tag}", "FROG", "buy", QTY, start, start + 90 * NS_PER_S, period_s=1.0)
    pid = parent.parent_id
    try:
        async with Market(conn, topics.md, ["FROG"]), Venue(conn, topics) as venue:
            agent.start()
            await publish_parents(conn, topics.parent_orders, [parent])

            async def trading() -> bool:
                row = await http.parent(pid)
                return row is not None and row["filled"] > 0 and len(venue.filled) >= 3

            await until(trading, "child orders and fills", 90, agent)
            row = await http.parent(pid)
            assert row is not None and row["status"] == "active" and row["last_child_ts"] is not None
            assert 0 < row["filled"] < QTY and row["remaining"] == QTY - row["filled"] and row["periods"] == 90

            async def ready() -> bool:
                return (await http.get("/readyz"))[0] == 200

            await until(ready, "/readyz 200 while trading", 20, agent)

            # ---- a cancel for a parent this agent does not hold: dead-lettered, the parent untouched
            async with KafkaSink(conn) as sink:
                await sink.send(topics.parent_orders, json.dumps(
                    {"schema": "parent_cancel.v1", "parent_id": f"NOPE-{tag}"}).encode(), key=b"FROG")
            await until(lambda: bool(agent.events("dead_letter")), "the unknown cancel's dead-letter line", 20, agent)

            # ---- on, through the topic
            async with KafkaSink(conn) as sink:
                await sink.send(topics.parent_orders, json.dumps(
                    {"schema": "kill_switch.v1", "on": True, "reason": "venue halt drill"}).encode(), key=b"FROG")

            async def switch_on() -> bool:
                return await http.metric("mpc_agent_kill_switch") == 1.0

            await until(switch_on, "mpc_agent_kill_switch 1", 20, agent)
            status, body = await http.get("/readyz")
            assert status == 503 and body["failing"] == ["kill_switch"], body
            assert body["conditions"]["kill_switch"]["detail"] == "on: venue halt drill"
            await asyncio.sleep(1.0)  # a step in flight when the switch flipped may still commit its child
            n_held = len(venue.filled)
            await asyncio.sleep(4.0)
            assert len(venue.filled) == n_held, "child orders were sent while the kill switch was on"
            row = await http.parent(pid)
            assert row is not None and row["status"] == "active" and row["remaining"] > 0  # held, not expired

            # ---- SIGKILL: the restarted agent comes back with the switch on
            agent.kill()
            agent.start()
            await until(lambda: agent.assigned_count() >= 2, "the restarted agent's assignment", 60, agent)
            await until(switch_on, "the switch restored from the state topic", 20, agent)
            await asyncio.sleep(3.0)
            assert len(venue.filled) == n_held, "child orders were sent after the restart with the switch on"

            # ---- off, over HTTP
            assert (await http.post_kill(False, "drill over", None))[0] == 401
            assert (await http.post_kill(False, "drill over", "wrong"))[0] == 401
            status, state = await http.post_kill(False, "drill over", TOKEN)
            assert status == 200 and state["on"] is False and state["changed"] is True, state

            async def completed() -> bool:
                r = await http.parent(pid)
                return r is not None and r["status"] == "completed"

            await until(completed, "the parent to complete after the switch went off", 80, agent)
            row = await http.parent(pid)
            assert row is not None and row["filled"] == QTY and row["average_price"] > 0

            async def counted() -> bool:  # the housekeeping pass after the completion
                return await http.metric("mpc_agent_parents", {"status": "completed"}) == 1.0

            await until(counted, "mpc_agent_parents{status=completed} 1", 5, agent)

            # ---- retention: gone from /parents and from the state topic
            async def dropped() -> bool:
                return await http.parent(pid) is None

            await until(dropped, "the parent to leave /parents after its retention", 30, agent)
            state_records = await read_state(state_reader(conn), topics.agent_state)
            assert pid not in state_records, "no tombstone for the dropped parent"
            assert state_records[KILL_SWITCH_KEY]["on"] is False
        children = check_children(await read_topic(conn, topics.child_orders), [parent])
        assert children[pid] == QTY
        dlq = await read_topic(conn, f"{topics.parent_orders}.dlq")
        assert [(r.header("error"), json.loads(r.value or b"{}")["parent_id"]) for r in dlq] == [
            (b"unknown_parent", f"NOPE-{tag}")]
    finally:
        agent.kill()
    events = agent.events()
    kinds = [e["event"] for e in events]
    flips = [(e["on"], e["source"], e.get("via")) for e in events if e["event"] == "kill_switch"]
    assert [f[0] for f in flips] == [True, True, False], flips  # on; on again after the restart; off
    assert flips[0][1].startswith(f"topic {topics.parent_orders}[0]@") and flips[2][1].startswith("http ")
    assert flips[1][1] == flips[0][1] and flips[1][2] == "restored from the state topic"
    assert kinds.count("parent_accepted") == 1 and kinds.count("parent_completed") == 1
    assert kinds.count("parent_dropped") == 1 and kinds.count("restore") == 1
    dead = agent.events("dead_letter")
    assert [(d["reason"], d["topic"]) for d in dead] == [("unknown_parent", topics.parent_orders)], dead
    assert kinds.count("child_sent") >= len(venue.filled) - 1  # a child in flight at the SIGKILL may lack it
    done = next(e for e in events if e["event"] == "parent_completed")
    assert done["filled"] == QTY and done["unfilled"] == 0
    print(f"\nops: kill switch held the parent across a SIGKILL; events {dict(sorted(_count(kinds).items()))}")


def _count(kinds: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in kinds:
        out[k] = out.get(k, 0) + 1
    return out


def test_readiness_names_the_broker_during_an_outage_and_kafka_errors_are_two_lines(
        private_broker: Any, tmp_path: Path) -> None:
    asyncio.run(_outage_scenario(*private_broker, tmp_path))


async def _outage_scenario(broker: Any, bootstrap: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = make_topics(tag)
    conn = KafkaConnection(bootstrap_servers=bootstrap, client_id=f"test-{tag}", request_timeout_ms=5000)
    await setup_topics(conn, topics, 1)
    port = free_port()
    http = Http(port)
    agent = AgentProcess(agent_env(bootstrap, topics, agent_id=f"rdy-{tag}", group_id=f"g-{tag}", metrics_port=port,
                                   extra={"MPC_AGENT_LOG__KAFKA_QUIET_S": "5"}), tmp_path / "agent.log")
    start = time.time_ns() + 3 * NS_PER_S
    parent = ParentOrder(f"R-{tag}", "FROG", "buy", QTY, start, start + 240 * NS_PER_S, period_s=1.0)
    report: list[str] = []
    try:
        async with Market(conn, topics.md, ["FROG"]), Venue(conn, topics) as venue:
            agent.start()
            await publish_parents(conn, topics.parent_orders, [parent])

            async def ready() -> bool:
                return (await http.get("/readyz"))[0] == 200 and len(venue.filled) >= 2

            await until(ready, "/readyz 200 with the parent trading", 90, agent)
            _, body = await http.get("/readyz")
            assert set(body["conditions"]) == {"service", "broker", "partitions", "market_data", "kill_switch"}
            assert body["conditions"]["market_data"]["age_s"]["FROG"] < 2.0

            # ---- the broker goes away
            await asyncio.to_thread(broker.run, "pause")
            t_pause = time.monotonic()
            seen: list[tuple[float, int | None, list[str]]] = []
            alive: set[int | None] = set()

            async def not_ready() -> bool:
                status, body = await http.get("/readyz")
                alive.add((await http.get("/livez"))[0])
                seen.append((time.monotonic() - t_pause, status, body.get("failing", []) if body else []))
                return status == 503 and "broker" in body["failing"]

            took = await until(not_ready, "/readyz 503 naming the broker", 30, agent, interval_s=0.5)
            assert await http.metric("mpc_agent_ready") == 0.0 and await http.metric("mpc_agent_broker_up") == 0.0
            report.append(f"/readyz 503 (broker) {took:.1f} s after the pause")
            await asyncio.sleep(max(0.0, 15.0 - (time.monotonic() - t_pause)))  # a 15 s outage
            alive.add((await http.get("/livez"))[0])
            assert alive == {200}, f"/livez during the outage: {alive}"
            assert agent.alive

            # ---- the broker comes back
            await asyncio.to_thread(broker.run, "resume")
            t_resume = time.monotonic()
            took = await until(ready, "/readyz 200 after the broker returned", 120, agent, interval_s=0.5)
            report.append(f"/readyz 200 again {took:.1f} s after the resume")
            assert await http.metric("mpc_agent_ready") == 1.0  # set by the /readyz request itself too
            await asyncio.sleep(7.0)  # log.kafka_quiet_s = 5: the outage's closing line
            outage_s = t_resume - t_pause
    finally:
        agent.kill()
    lines = [json.loads(x) for x in agent.log_text().splitlines() if x.startswith("{")]
    kafka_errors = [x for x in lines if x["logger"].startswith("aiokafka") and x["level"] in ("WARNING", "ERROR")]
    outages = [x for x in lines if x.get("event") == "kafka_outage"]
    phases = [x["phase"] for x in outages]
    assert phases and phases[0] == "start" and "end" in phases, phases
    ends = [x for x in outages if x["phase"] == "end"]
    assert max(x["duration_s"] for x in ends) >= 0.5 * outage_s, ends
    assert len(kafka_errors) <= 2 * len(ends) + 2, [x["message"] for x in kafka_errors]
    report.append(f"aiokafka warning/error lines: {len(kafka_errors)} for a {outage_s:.0f} s outage; "
                  f"outage lines {[(x['phase'], x.get('duration_s'), x.get('suppressed')) for x in outages]}")
    print("\nreadiness: " + "; ".join(report))


def test_a_restore_after_1000_finished_parents_on_the_state_topic_brings_none_back_as_active(
        kafka_bootstrap: str) -> None:
    asyncio.run(_thousand_scenario(kafka_bootstrap))


async def _thousand_scenario(bootstrap: str) -> None:
    """1,000 parents accepted and finished through the real compacted state topic, in two halves: the
    first half past its retention (dropped, tombstoned), the second still retained."""
    tag = uuid.uuid4().hex[:8]
    topic = f"state.{tag}"
    conn = KafkaConnection(bootstrap_servers=bootstrap, client_id=f"test-{tag}", request_timeout_ms=10000)
    await create_topics(conn, [topic], 1, compacted=True)
    eng, clock = ExecutionEngine(), [0]
    life = ParentLifecycle(60.0, wall_clock=lambda: clock[0])
    tracker = StateTracker(eng, "a1")
    written = {"records": 0, "tombstones": 0}
    t0 = NS_PER_S * 1_743_687_000

    async with KafkaSink(conn) as sink:
        async def step() -> None:
            out = tracker.collect()
            written["records"] += sum(v is not None for _, v in out)
            written["tombstones"] += sum(v is None for _, v in out)
            if out:
                await sink.send_many([OutRecord(topic, v, key=k.encode()) for k, v in out])

        for half in range(2):
            for i in range(500 * half, 500 * (half + 1)):
                pid = f"P{i:04d}"
                eng.submit(ParentOrder(pid, "AAA", "buy", 1000.0, t0, t0 + 300 * NS_PER_S, 60.0))
                await step()
                if i % 2:
                    eng.cancel(pid)
                else:
                    eng.on_fill(Fill(f"f{i}", f"{pid}:0", pid, 1000.0, 50.0, t0))
                await step()
            scan = life.scan(eng, now_ns=t0)  # the half's end times (and, after the second, the first's drop)
            if half == 0:
                clock[0] += 61 * NS_PER_S  # the first half's retention (60 s) passes
        assert len(scan.dropped) == 500 and scan.counts == {"active": 0, "completed": 250, "cancelled": 250,
                                                            "expired": 0}
        await step()
    assert written == {"records": 2000, "tombstones": 500}, written
    records = await read_state(state_reader(conn), topic)
    assert len(records) == 500 and all(r["status"] != "active" for r in records.values())
    fresh = ExecutionEngine()
    restored = restore(fresh, StateTracker(fresh, "a2"), records, owns=lambda s: True)
    assert not fresh.active() and len(restored) == 500
    assert {r["status"] for r in restored} == {"completed", "cancelled"}
    assert all(int(r["parent_id"][1:]) >= 500 for r in restored)  # the dropped half stays dropped


def test_publish_sends_the_kill_switch_to_every_partition_and_a_cancel_keyed_by_symbol(
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.app.cli import main
    from feeds.wire import codec

    tag = uuid.uuid4().hex[:8]
    topics = make_topics(tag)
    conn = KafkaConnection(bootstrap_servers=kafka_bootstrap, client_id=f"test-{tag}", request_timeout_ms=5000)
    asyncio.run(setup_topics(conn, topics, 3))
    monkeypatch.setenv("MPC_AGENT_TOPICS__PARENT_ORDERS", topics.parent_orders)
    base = ["publish", "--bootstrap-servers", kafka_bootstrap]
    assert main([*base, "--kill-switch", "on", "--reason", "venue halt"]) == 0
    assert main([*base, "--cancel", "P9", "--symbol", "FROG", "--reason", "trader"]) == 0
    assert main([*base, "--kill-switch", "off"]) == 2  # a reason is required
    assert main([*base, "--kill-switch", "off", "--reason", "x", "--cancel", "P9", "--symbol", "FROG"]) == 2
    err = capsys.readouterr().err
    assert f"kill_switch.v1 ON (venue halt) on {topics.parent_orders} partition(s) [0, 1, 2]" in err
    assert "--kill-switch on|off needs --reason" in err and "sends only the kill switch" in err
    records = asyncio.run(read_topic(conn, topics.parent_orders))
    kills = [r for r in records if r.key == b"__kill_switch__"]
    assert sorted(r.partition for r in kills) == [0, 1, 2]
    assert all(codec.decode(r.value).on is True for r in kills)  # type: ignore[union-attr]
    cancels = [r for r in records if r.key == b"FROG"]
    assert len(cancels) == 1 and codec.decode(cancels[0].value).parent_id == "P9"  # type: ignore[union-attr]
    assert len(records) == 4
