"""The live service on a real broker: end to end, parity with the replay runner, metrics.

One scenario runs once per module (about 25 minutes of the real FROG day,
2025-04-03 13:55-14:21 UTC, a 1,000-share buy from 14:00 to 14:20 with
60-second periods) and the tests check different properties of it:

- the agent (``AgentService`` on ``KafkaSource``/``KafkaSink``) receives the
  parent order on the parent-orders topic and the book on the md topic;
- a fill responder (``agent.app.fill_responder.FillResponder`` over the same
  slice) answers child orders with simulated fills on the fills topic;
- the test plays the market: it publishes one period of data at a time and
  waits until the agent has consumed it and every fill of the venue reached
  the agent (real time would pass between two periods), so fills reach the
  engine before its next decision, as in ``replay.runner``;
- a malformed market-data message is published in the middle (DLQ + counter).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from agent.app.fill_responder import FillResponder, SimulatedVenue
from agent.app.runtime import Runtime
from agent.core.engine import ExecutionEngine, mpc_policy
from agent.core.model import NS_PER_S, ChildOrder, Fill, ParentOrder
from agent.live.http import HttpServer
from agent.live.metrics import AgentMetrics
from agent.live.service import AgentService
from agent.live.settings import ServiceSection, TopicsSection
from feeds.book import BookBatch
from feeds.file_feed import encode_rows
from feeds.kafka import KafkaConnection, KafkaSink, KafkaSource, create_topics
from feeds.ports import Record
from feeds.wire import codec
from replay.runner import run_strategy
from replay.simulator import FillSimulator
from tests.integration.kafka_helpers import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"
DAY0 = 1_743_638_400 * NS_PER_S  # 2025-04-03 00:00 UTC
START = DAY0 + 14 * 3600 * NS_PER_S
QTY = 1000.0
MALFORMED = b'{"schema":"mbp10.v1","symbol":"FROG","ts_event":1}'


@dataclass
class Scenario:
    parent: ParentOrder
    book: BookBatch
    children: list[ChildOrder] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    dlq: list[Record] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics_text: str = ""
    healthz: tuple[int, dict[str, Any]] = (0, {})
    ref_children: list[ChildOrder] = field(default_factory=list)
    ref_filled: float = 0.0


def _slice() -> BookBatch:
    if not DATA.exists():
        pytest.fail(f"{DATA} is missing (CI keeps ../shared/data beside the clone)")
    from feeds.files.readers import read_book

    book = read_book(DATA).batch
    ts = book.ts_event
    lo = int(np.searchsorted(ts, START - 5 * 60 * NS_PER_S))
    hi = int(np.searchsorted(ts, START + 21 * 60 * NS_PER_S))
    return book[lo:hi]


async def _http(url: str, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url + path) as r:
        return r.status, await r.text()


async def _until(cond: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def _read_all(conn: KafkaConnection, topics: list[str]) -> list[Any]:
    """Every committed record of ``topics`` (read to their ends, one topic after the other)."""
    return [r for topic in topics for r in await read_topic(conn, topic)]


async def _scenario(bootstrap: str, runner: str) -> Scenario:
    book = _slice()
    tag = uuid.uuid4().hex[:8]
    topics = TopicsSection(md=f"md.{tag}", parent_orders=f"parents.{tag}", child_orders=f"children.{tag}",
                           fills=f"fills.{tag}", agent_state=f"state.{tag}", dlq=f"md.{tag}.dlq")
    conn = KafkaConnection(bootstrap_servers=bootstrap, client_id=f"test-{tag}")
    await create_topics(conn, [topics.md, topics.parent_orders, topics.child_orders, topics.fills, topics.dlq])
    parent = ParentOrder("P1", "FROG", "buy", QTY, START, START + 20 * 60 * NS_PER_S, period_s=60.0)
    sc = Scenario(parent, book)
    ref = run_strategy(book, parent, mpc_policy, FillSimulator(book), strategy="mpc")
    sc.ref_children, sc.ref_filled = ref.children, ref.filled

    metrics = AgentMetrics.create(CollectorRegistry())
    engine = ExecutionEngine(clock=time.time_ns)
    agent = AgentService(engine, source=KafkaSource(conn, [topics.md, topics.parent_orders, topics.fills],
                                                    group_id=f"agent-{tag}"),
                         sink=KafkaSink(conn), metrics=metrics, topics=topics, clock=None,
                         settings=ServiceSection(poll_timeout_ms=20, engine_runner=runner))  # type: ignore[arg-type]
    venue = SimulatedVenue(book)
    responder = FillResponder(venue, KafkaSource(conn, [topics.child_orders], group_id=f"venue-{tag}"),
                              KafkaSink(conn), fills_topic=topics.fills)
    http = HttpServer(metrics.registry, Runtime({"service": agent}, agent.kill_switch), host="127.0.0.1", port=0)
    async with agent, http, KafkaSink(conn) as market:
        agent_task = asyncio.create_task(agent.run(), name="agent")
        venue_task = asyncio.create_task(responder.run(), name="venue")
        await _until(lambda: agent.health()[0], "the agent's partitions to be assigned")
        await market.send(topics.parent_orders, codec.encode(codec.parent_from_model(parent)), key=b"P1")
        await _until(lambda: "P1" in engine.parents, "the parent order to reach the engine")
        ts = book.ts_event
        bounds = parent.start_ns + parent.period_ns * np.arange(1, parent.n_periods, dtype=np.int64)
        edges = np.unique(np.concatenate([[0], np.searchsorted(ts, bounds), [len(book)]]))
        for k, (a, b) in enumerate(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True)):
            await market.send_many(encode_rows(book[a:b], topics.md))
            if k == 3:
                await market.send(topics.md, MALFORMED, key=b"FROG")
            last = int(ts[b - 1])
            await _until(lambda last=last: agent.processed_ts.get("FROG", 0) >= last, f"chunk {k} consumed")
            await _until(lambda: len(venue.children) == agent.children_sent
                         and {f.fill_id for f in venue.fills}
                         <= {i for st in agent.engine.parents.values() for i in st.fill_ids}, f"fills of chunk {k}")
        sc.healthz = (lambda s, b: (s, json.loads(b)))(*await _http(http.url, "/healthz"))
        sc.metrics_text = (await _http(http.url, "/metrics"))[1]
        agent.request_stop()
        responder.request_stop()
        await asyncio.wait_for(asyncio.gather(agent_task, venue_task), 10)
        sc.summary = engine.summary("P1")
    recs = await _read_all(conn, [topics.child_orders, topics.fills, topics.dlq])
    for r in recs:
        if r.topic == topics.child_orders:
            sc.children.append(codec.child_to_model(codec.decode(r.value)))  # type: ignore[arg-type]
        elif r.topic == topics.fills:
            sc.fills.append(codec.fill_to_model(codec.decode(r.value)))  # type: ignore[arg-type]
        else:
            sc.dlq.append(r)
    return sc


@pytest.fixture(scope="module", params=["thread", "loop"])
def scenario(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Scenario:
    """The run, with the engine on its thread and on the event loop (``service.engine_runner``)."""
    return asyncio.run(_scenario(kafka_bootstrap, request.param))


def test_service_on_kafka_parent_completes_and_children_reconcile_with_fills(scenario: Scenario) -> None:
    sc = scenario
    assert sc.summary["done"] and sc.summary["remaining"] == pytest.approx(0.0, abs=1e-6)
    assert sum(f.quantity for f in sc.fills) == pytest.approx(QTY)
    ids = [c.child_order_id for c in sc.children]
    assert len(ids) == len(set(ids)) >= 10
    assert len({f.fill_id for f in sc.fills}) == len(sc.fills)
    by_child: dict[str, float] = {}
    for f in sc.fills:
        assert f.child_order_id in ids and f.parent_id == "P1"
        by_child[f.child_order_id] = by_child.get(f.child_order_id, 0.0) + f.quantity
    for c in sc.children:
        assert by_child.get(c.child_order_id, 0.0) <= c.quantity + 1e-9
        assert c.child_order_id == f"P1:{c.period_index}" and c.time_in_force == "IOC"
    # remaining_before of each child = quantity minus the fills of the earlier children
    done = 0.0
    for c in sorted(sc.children, key=lambda c: c.period_index):
        assert c.remaining_before == pytest.approx(QTY - done)
        done += by_child.get(c.child_order_id, 0.0)


def test_service_on_kafka_child_orders_equal_the_replay_runner(scenario: Scenario) -> None:
    live = [(c.child_order_id, c.quantity, c.limit_price, c.ts_event, c.remaining_before)
            for c in scenario.children]
    ref = [(c.child_order_id, c.quantity, c.limit_price, c.ts_event, c.remaining_before)
           for c in scenario.ref_children]
    assert live == ref
    assert sum(f.quantity for f in scenario.fills) == pytest.approx(scenario.ref_filled)


def test_service_on_kafka_metrics_scraped_over_http_and_malformed_message_in_dlq(scenario: Scenario) -> None:
    sc = scenario
    status, body = sc.healthz
    assert status == 200 and body["ready"] is True
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(sc.metrics_text) for s in fam.samples}
    n_solves = samples[("mpc_agent_solve_duration_seconds_count", ())]
    assert n_solves >= len(sc.children)
    assert samples[("mpc_agent_solve_duration_seconds_bucket", (("le", "+Inf"),))] == n_solves
    assert samples[("mpc_agent_snapshots_rejected_total", (("reason", "missing_field"),))] == 1.0
    assert samples[("mpc_agent_snapshots_total", ())] == len(sc.book)
    assert samples[("mpc_agent_child_orders_total", (("side", "buy"),))] == len(sc.children)
    assert samples[("mpc_agent_parent_remaining_shares", (("symbol", "FROG"),))] == pytest.approx(0.0, abs=1e-6)
    assert samples[("mpc_agent_decision_latency_seconds_count", ())] == len(sc.children)
    assert [r.value for r in sc.dlq] == [MALFORMED]
    assert sc.dlq[0].header("error") == b"missing_field"


def test_cli_publish_puts_a_data_file_and_a_parent_order_on_kafka(kafka_bootstrap: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.app.cli import main
    from feeds.files.readers import read_book

    dbn = DATA.parent / "GLBX.MDP3.test_data.mbp-10.dbn.zst"
    tag = uuid.uuid4().hex[:8]
    md, parents = f"md.pub.{tag}", f"parents.pub.{tag}"
    monkeypatch.setenv("MPC_AGENT_TOPICS__PARENT_ORDERS", parents)
    parent_file = tmp_path / "parent.json"
    parent_file.write_text(json.dumps({"parent_id": "PX", "symbol": "ESH1", "side": "sell", "quantity": 10,
                                       "start": "2021-03-01T14:00:00Z", "end": "2021-03-01T15:00:00Z",
                                       "period_s": 60}))
    rc = main(["publish", str(dbn), "--topic", md, "--bootstrap-servers", kafka_bootstrap,
               "--parent-order", str(parent_file)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    n = len(read_book(dbn).batch)
    assert out["rows"] == n and out["parent_order"] == "PX"
    rc = main(["publish", "--bootstrap-servers", kafka_bootstrap, "--parent-id", "PY", "--symbol", "ESH1",
               "--side", "buy", "--quantity", "5", "--start", "2021-03-01T14:00:00Z",
               "--end", "2021-03-01T15:00:00Z", "--period-s", "30"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["parent_order"] == "PY"
    conn = KafkaConnection(bootstrap_servers=kafka_bootstrap)
    recs = asyncio.run(_read_all(conn, [md, parents]))
    books = [codec.decode(r.value) for r in recs if r.topic == md]  # type: ignore[arg-type]
    orders = [codec.decode(r.value) for r in recs if r.topic == parents]  # type: ignore[arg-type]
    assert len(books) == n and all(b.symbol == "ESH1" for b in books)  # type: ignore[union-attr]
    assert [o.parent_id for o in orders] == ["PX", "PY"]  # type: ignore[union-attr]
    assert orders[1].period_s == 30 and orders[1].side == "buy"  # type: ignore[union-attr]
