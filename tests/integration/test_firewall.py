"""Bad-input firewall (issue 7 item 1): hostile messages on every input topic never hurt the agent.

Two layers:

- a hypothesis property test, in process: one hostile message of any kind on
  any topic (``tests/integration/hostile.py``) goes through ``Intake`` and the
  ``EngineDriver`` -> exactly one DLQ copy with the expected reason, nothing
  reaches the engine, nothing raises;
- the broker test: a real ``python -m agent run`` process on the real broker
  gets >= 10,000 hostile messages per input topic (md.mbp10, parent orders,
  fills; seeded, so CI is reproducible) interleaved with good ones. It must stay
  alive and consume to the end offsets within a bound; every bad message is on
  its DLQ with the expected ``error`` header and counted in /metrics by reason;
  every good message is processed (snapshots counted, parent orders worked,
  fills applied: remaining as expected); no child order is based on a rejected
  snapshot (bad snapshots carry odd-nanosecond ``ts_event``s no good one has).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agent.core.engine import EngineSettings, ExecutionEngine
from agent.core.model import Fill
from agent.live.engine_step import EngineDriver
from agent.live.intake import Intake
from agent.live.metrics import AgentMetrics
from agent.live.settings import ServiceSection, TopicsSection
from feeds.kafka import create_topics
from feeds.ports import DLQ_ERROR_HEADER, Record
from feeds.wire import codec
from tests.integration.agent_process import AgentProcess, agent_env
from tests.integration.hostile import (
    FILL,
    MD,
    NS,
    PARENT,
    Context,
    dumps,
    good_book,
    good_fill,
    good_parent,
    hostile,
)
from tests.integration.kafka_helpers import caught_up, free_port, publish_values, read_topic

N_BAD = 10_000
MAX_BYTES = 65_536
TOPIC_OF = {MD: "md", PARENT: "parent_orders", FILL: "fills"}


# ----------------------------------------------------------------------------- in process
def _context_and_pipeline(now: int) -> tuple[Context, Intake, EngineDriver, AgentMetrics]:
    ctx = Context(now_ns=now, last_good_ns=now - 600 * NS, max_bytes=MAX_BYTES)
    metrics = AgentMetrics.create(CollectorRegistry(auto_describe=True))
    intake = Intake(TopicsSection(), metrics, max_message_bytes=MAX_BYTES, clock=lambda: now)
    engine = ExecutionEngine(EngineSettings())
    driver = EngineDriver(engine, ServiceSection())
    t = TopicsSection()
    setup = {
        t.md: [Record(t.md, 0, 0, None, dumps(good_book(ctx, ctx.last_good_ns, random.Random(0))))],
        t.parent_orders: [Record(t.parent_orders, 0, i, None, dumps(good_parent(ctx, pid, now - 60 * NS, quantity=q)))
                          for i, (pid, q) in enumerate([(ctx.live_parent, 1e5), (ctx.done_parent, 10.0)])],
    }
    driver.step(intake.take(setup))
    engine.on_fill(Fill("done", f"{ctx.done_parent}:0", ctx.done_parent, 10.0, 10.0, now))
    return ctx, intake, driver, metrics


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), topic=st.sampled_from([MD, PARENT, FILL]))
def test_firewall_any_hostile_message_is_dead_lettered_with_its_reason_and_never_reaches_the_engine(
    rng: random.Random, topic: str
) -> None:
    now = 1_800_000_000 * NS
    ctx, intake, driver, metrics = _context_and_pipeline(now)
    value, reason = hostile(topic, ctx, rng)
    t = TopicsSection()
    name = getattr(t, TOPIC_OF[topic])
    inb = intake.take({name: [Record(name, 0, 7, b"k", value)]})
    res = driver.step(inb)
    dlq = inb.dlq + intake.dead_letters(inb, res.rejected)
    assert [dict(o.headers)[DLQ_ERROR_HEADER].decode() for o in dlq] == [reason]
    assert dlq[0].topic == (t.dlq if topic == MD else f"{name}.dlq")
    assert (res.fills_applied, res.children) == (0, [])
    assert inb.md is None or len(inb.md) == 0
    assert sorted(driver.engine.parents) == sorted([ctx.live_parent, ctx.done_parent])
    label = {"reason": reason} if topic == MD else {"topic": name, "reason": reason}
    metric = "mpc_agent_snapshots_rejected_total" if topic == MD else "mpc_agent_messages_rejected_total"
    assert metrics.registry.get_sample_value(metric, label) == 1


# ----------------------------------------------------------------------------- broker
@dataclass
class Stream:
    """What was published on one topic: values in offset order and, per offset, the expected reason."""

    values: list[bytes | None] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)
    duplicates: int = 0

    def good(self, v: bytes) -> None:
        self.values.append(v)

    def bad(self, v: bytes | None, reason: str) -> None:
        self.reasons[len(self.values)] = reason
        self.values.append(v)


@dataclass
class Run:
    streams: dict[str, Stream]
    topics: dict[str, str]
    good_ts: set[int]
    good_parents: dict[str, float]
    good_fill_qty: dict[str, float]
    dlq: dict[str, list[Record]]
    children: list[Record]
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    summary: dict[str, Any] | None
    alive_at_end: bool
    drain_s: float
    stderr: str


def _build(rng: random.Random, now: int) -> tuple[dict[str, Stream], set[int], dict[str, float], dict[str, float]]:
    """Seeded streams: parents (phase 1), then market data and fills (phase 2), bad ones interleaved."""
    ctx = Context(now_ns=now, last_good_ns=now - 600 * NS, max_bytes=MAX_BYTES, live_parent="GOOD-1")
    t0 = ctx.last_good_ns
    parents = {f"GOOD-{i}": 100_000.0 for i in range(1, 4)} | {ctx.done_parent: 10.0}
    ps, ms, fs = Stream(), Stream(), Stream()
    good_parent_values = [dumps(good_parent(ctx, pid, t0, quantity=q)) for pid, q in parents.items()]
    slots = sorted(rng.sample(range(N_BAD), len(parents)))
    for i in range(N_BAD):
        while slots and slots[0] == i:
            slots.pop(0)
            ps.good(good_parent_values.pop(0))
        ps.bad(*hostile(PARENT, ctx, rng))
    for _ in range(20):  # a re-sent parent order (same id) is refused as a duplicate
        ps.bad(dumps(good_parent(ctx, "GOOD-2", t0)), "duplicate_parent")
    # market data: ~6,000 good books over 5 minutes (whole milliseconds), 10,000+ bad ones between them
    good_ts: set[int] = set()
    ms.good(dumps(good_book(ctx, t0, rng)))
    good_ts.add(t0)
    n_good_md, bad_md = 6_000, 0
    for i in range(1, n_good_md):
        ctx.last_good_ns = t0 + i * 50_000_000
        ms.good(dumps(good_book(ctx, ctx.last_good_ns, rng)))
        good_ts.add(ctx.last_good_ns)
        for _ in range(2 if i % 3 else 1):
            ms.bad(*hostile(MD, ctx, rng))
            bad_md += 1
    while bad_md < N_BAD:
        ms.bad(*hostile(MD, ctx, rng))
        bad_md += 1
    # fills: the small parent is filled first; then good fills of the live parents, duplicates, bad ones
    fs.good(dumps(good_fill(ctx, ctx.done_parent, "complete-small", 10.0)))
    fill_qty = {pid: 0.0 for pid in parents} | {ctx.done_parent: 10.0}
    sent: list[bytes] = []
    for i in range(N_BAD):
        if i % 40 == 0:
            pid = f"GOOD-{1 + (i // 40) % 3}"
            v = dumps(good_fill(ctx, pid, f"ok-{i}", 10.0))
            fs.good(v)
            sent.append(v)
            fill_qty[pid] += 10.0
        if i % 97 == 0 and sent:
            fs.good(rng.choice(sent))  # at-least-once redelivery: ignored, counted as a duplicate
            fs.duplicates += 1
        fs.bad(*hostile(FILL, ctx, rng))
    return {PARENT: ps, MD: ms, FILL: fs}, good_ts, parents, fill_qty


@pytest.fixture(scope="module")
def firewall_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    stem = f"fw{random.Random().getrandbits(32):08x}"
    topics = {"md": f"{stem}.md", "parent_orders": f"{stem}.parents", "fills": f"{stem}.fills",
              "child_orders": f"{stem}.children", "dlq": f"{stem}.md.dlq", "agent_state": f"{stem}.state"}
    dlqs = {MD: topics["dlq"], PARENT: f"{topics['parent_orders']}.dlq", FILL: f"{topics['fills']}.dlq"}
    now = time.time_ns() // NS * NS
    streams, good_ts, parents, fill_qty = _build(random.Random(20250403), now)
    asyncio.run(create_topics(kafka_bootstrap, sorted({*topics.values(), *dlqs.values()})))
    env = agent_env(kafka_bootstrap, topics, group_id=f"{stem}.group", metrics_port=free_port(),
                    MPC_AGENT_KAFKA__MAX_MESSAGE_BYTES=str(MAX_BYTES),
                    MPC_AGENT_RISK__MAX_SNAPSHOT_AGE_MS=str(3_600_000))
    agent = AgentProcess.spawn(env, tmp_path_factory.mktemp("firewall") / "agent.log")
    try:
        agent.wait_ready()
        asyncio.run(publish_values(kafka_bootstrap, topics["parent_orders"], streams[PARENT].values))
        asyncio.run(caught_up(kafka_bootstrap, f"{stem}.group", [topics["parent_orders"]], 120))
        t0 = time.monotonic()

        async def phase2() -> None:
            await asyncio.gather(publish_values(kafka_bootstrap, topics["md"], streams[MD].values),
                                 publish_values(kafka_bootstrap, topics["fills"], streams[FILL].values))

        asyncio.run(phase2())
        asyncio.run(caught_up(kafka_bootstrap, f"{stem}.group", [topics["md"], topics["fills"]], 180))
        drain_s = time.monotonic() - t0
        alive = agent.proc.poll() is None
        samples = agent.samples()
        summary = agent.stop(30.0, must_stop=True)
        dlq = {k: asyncio.run(read_topic(kafka_bootstrap, v)) for k, v in dlqs.items()}
        children = asyncio.run(read_topic(kafka_bootstrap, topics["child_orders"]))
        run = Run(streams, topics, good_ts, parents, fill_qty, dlq, children, samples, summary, alive, drain_s,
                  agent.log_text())
        for k in (MD, PARENT, FILL):  # the evidence (pytest -s): tried, dead-lettered, by reason
            print(f"firewall {k}: {len(streams[k].values)} published, {len(streams[k].reasons)} hostile, "
                  f"{len(dlq[k])} on the DLQ; by reason {dict(sorted(_rejected(run, k).items()))}")
        print(f"firewall: drained in {drain_s:.1f} s, {len(children)} child orders, "
              f"{streams[FILL].duplicates} duplicate fills")
        yield run
    finally:
        agent.close()


def _rejected(run: Run, topic: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for (name, labels), v in run.samples.items():
        d = dict(labels)
        if topic == MD and name == "mpc_agent_snapshots_rejected_total":
            out[d["reason"]] += int(v)
        if topic != MD and name == "mpc_agent_messages_rejected_total" and d["topic"] == run.topics[TOPIC_OF[topic]]:
            out[d["reason"]] += int(v)
    return +out


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("topic", [MD, PARENT, FILL])
def test_firewall_every_bad_message_is_dead_lettered_with_its_reason_and_counted(firewall_run: Run, topic: str) -> None:
    run, stream = firewall_run, firewall_run.streams[topic]
    assert len(stream.reasons) >= N_BAD
    got = {int(dict(r.headers)["source.offset"]): dict(r.headers)[DLQ_ERROR_HEADER].decode()
           for r in run.dlq[topic]}
    assert len(run.dlq[topic]) == len(got)  # no DLQ copy twice
    assert got == stream.reasons  # every bad one, with its reason, and no good one
    assert _rejected(run, topic) == Counter(stream.reasons.values())


@pytest.mark.kafka
@pytest.mark.slow
def test_firewall_agent_stays_alive_and_consumes_to_the_end(firewall_run: Run) -> None:
    assert firewall_run.alive_at_end, firewall_run.stderr[-3000:]
    assert "Traceback" not in firewall_run.stderr, firewall_run.stderr[-3000:]
    assert firewall_run.drain_s < 180


@pytest.mark.kafka
@pytest.mark.slow
def test_firewall_every_good_message_is_processed(firewall_run: Run) -> None:
    run = firewall_run
    s = run.samples
    assert s[("mpc_agent_snapshots_total", ())] == len(run.good_ts)
    assert s[("mpc_agent_fills_duplicate_total", ())] == run.streams[FILL].duplicates
    fills = run.streams[FILL]
    assert s[("mpc_agent_fills_total", ())] == len(fills.values) - len(fills.reasons) - fills.duplicates
    assert run.summary is not None
    parents = run.summary["parents"]
    assert sorted(parents) == sorted(run.good_parents)
    for pid, qty in run.good_parents.items():
        assert parents[pid]["filled"] == pytest.approx(run.good_fill_qty[pid])
        assert parents[pid]["remaining"] == pytest.approx(qty - run.good_fill_qty[pid])


@pytest.mark.kafka
@pytest.mark.slow
def test_firewall_no_child_order_is_based_on_a_rejected_snapshot(firewall_run: Run) -> None:
    run = firewall_run
    children = [codec.decode_as(r.value, codec.ChildOrderMsg) for r in run.children]
    assert children, "no child order at all: the good parents were not worked"
    assert {c.parent_id for c in children} <= set(run.good_parents)
    assert all(c.ts_event in run.good_ts for c in children)
    ids = [c.child_order_id for c in children]
    assert len(ids) == len(set(ids))
