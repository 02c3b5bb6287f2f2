"""Live service on a real broker: snapshot ingest rate and decision latency.

Workload: one hour of the real FROG day (2025-04-03 14:00-15:00 UTC) copied
onto 20 symbols (S00..S19, rows interleaved in time order), 20 parent orders
(one per symbol, 14:05-14:55, 60-second periods: 50 decisions each), keyed by
symbol on a 4-partition md topic.

Phases (same broker, same run):

1. ``consumer``: baseline, a bare ``KafkaSource`` draining the backlog (no
   decoding): the ceiling the broker and aiokafka allow on this machine.
2. ``agent_backlog``: the full ``AgentService`` draining the same backlog
   while running the 20 parent orders: sustained snapshot ingest rate
   (target >= 30,000 snapshots/s) and its ratio to the baseline.
3. ``agent_paced``: the publisher replays ``--latency-minutes`` of the stream
   at ``--speed`` times real time (live-like: a 60 s period lasts 3 s at
   20x); decision latency = arrival of the batch holding the snapshot
   that closes a period -> broker ack of the child order (target p99 <= 10 ms).
   Parent starts staggered by ``--stagger-s`` seconds (decisions spread over
   the period, as on a desk), and, plain mode only, all at 14:05 (stagger 0:
   the 20 symbols carry the same data, so 20 decisions fall in the same batch
   and are solved one after the other on the engine thread: the worst case).

Phases 2 and 3 (stagger ``--stagger-s``) run in both service modes:

- ``plain``: idempotent producer, offsets committed every second, parents
  submitted in process (``run --feed kafka`` with ``exactly_once = false``);
- ``exactly-once``: the product default, wired as
  ``agent.app.builder.build_kafka_service`` does (:func:`build_exactly_once`): one
  Kafka transaction per step (child orders + agent-state records + consumed
  offsets), parent orders published to the parent-orders topic keyed by
  symbol; the decision latency ends at the transaction commit.

Every decision step (one that sends a child order) is also timed by parts
(:func:`instrument`: wait for the engine thread, engine step, begin, send,
offsets, commit) to show where the latency goes.
Usage::

    .venv/bin/python bench/live.py [--bootstrap H:P] [--minutes 60] [--speed 20] [--json out.json]

Without ``--bootstrap`` it uses KAFKA_BOOTSTRAP_SERVERS, else starts
``scripts/kafka-local``. Prints a table and writes JSON (bench/out/live.json).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import environment, print_table, write_json  # noqa: E402

DATA = ROOT / ".." / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"
NS = 1_000_000_000
DAY0 = 1_743_638_400 * NS
SYMBOLS = [f"S{i:02d}" for i in range(20)]


def bootstrap(arg: str | None) -> str:
    if arg:
        return arg
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env:
        return env
    # a lease (same convention as tests/conftest.py) keeps pytest sessions from stopping the broker
    lease = Path(os.environ.get("KAFKA_LOCAL_DIR", ROOT / ".kafka-local")) / "leases" / str(os.getpid())
    lease.parent.mkdir(parents=True, exist_ok=True)
    lease.touch()
    out = subprocess.run([str(ROOT / "scripts" / "kafka-local"), "start"], capture_output=True, text=True,
                         check=True, timeout=900)
    return out.stdout.strip().splitlines()[-1]


def workload(minutes: float) -> tuple[list[tuple[bytes, bytes]], np.ndarray, int]:
    """(key, value) messages of 20 symbols in time order, their ts_event, the last ts_event."""
    from feeds.file_feed import encode_rows
    from feeds.files.readers import read_book

    book = read_book(DATA).batch
    ts = book.ts_event
    t0 = DAY0 + 14 * 3600 * NS
    part = book[int(np.searchsorted(ts, t0)):int(np.searchsorted(ts, t0 + int(minutes * 60) * NS))]
    base = [r.value for r in encode_rows(part, "md")]
    assert all(v is not None for v in base)
    msgs = [(s.encode(), v.replace(b'"symbol":"FROG"', f'"symbol":"{s}"'.encode()))  # type: ignore[union-attr]
            for v in base for s in SYMBOLS]
    return msgs, np.repeat(part.ts_event, len(SYMBOLS)), int(part.ts_event[-1])


async def produce(conn: Any, topic: str, msgs: list[tuple[bytes, bytes]], ts: np.ndarray | None = None,
                  speed_x: float = 0.0) -> float:
    """Send ``msgs``: all at once, or paced in event time at ``speed_x`` times real time; wall time."""
    from feeds.kafka import KafkaSink
    from feeds.ports import OutRecord

    t0 = time.perf_counter()
    async with KafkaSink(conn, linger_ms=0 if speed_x > 0 else 5) as sink:
        i, n = 0, len(msgs)
        while i < n:
            if speed_x > 0 and ts is not None:
                due = ts[0] + (time.perf_counter() - t0) * speed_x * NS
                j = int(np.searchsorted(ts, due, side="right"))
                if j <= i:
                    await asyncio.sleep(min(0.05, (ts[i] - due) / NS / speed_x))
                    continue
            else:
                j = min(n, i + 2000)
            await sink.send_many([OutRecord(topic, v, key=k) for k, v in msgs[i:j]])
            i = j
    return time.perf_counter() - t0


async def bare_consume(conn: Any, topic: str, n: int) -> float:
    from feeds.kafka import KafkaSource

    got = 0
    async with KafkaSource(conn, [topic], group_id=f"bench-raw-{uuid.uuid4().hex[:6]}") as src:
        t0: float | None = None
        while got < n:
            recs = await src.getmany(timeout_ms=1000, max_records=5000)
            if recs and t0 is None:
                t0 = time.perf_counter()
            got += sum(len(v) for v in recs.values())
        return time.perf_counter() - (t0 or time.perf_counter())


def parents(stagger_s: float) -> list[Any]:
    """One parent per symbol from 14:05 (+ i * stagger_s), 50 minutes, 60-second periods."""
    from agent.core.model import ParentOrder

    out = []
    for i, s in enumerate(SYMBOLS):
        start = DAY0 + (14 * 3600 + 300) * NS + int(i * stagger_s * NS)
        out.append(ParentOrder(f"P-{s}", s, "buy" if i % 2 == 0 else "sell", 5000.0, start,
                               start + 50 * 60 * NS, period_s=60.0))
    return out


def instrument(svc: Any) -> tuple[list[dict[str, float]], list[float], dict[str, int]]:
    """Time the parts of every step that sends a child order (bench-side wrappers, no service change).

    Per decision step (seconds): ``wait`` = arrival -> the step starts (the engine thread or the
    previous step's publication still busy), ``engine`` = ``EngineDriver.step`` on the engine
    thread, ``begin`` / ``send`` / ``offsets`` / ``commit`` = the sink's calls (``send`` is the
    child orders + state records + DLQ batch with its acks; the other three exist only with
    transactions), ``other`` = the rest of the step (executor hand-off, encoding, the state
    records' serialisation, the exactly-once lock), ``total`` = arrival -> the step returns (the
    recorded decision latency is taken just before the step's metrics: ``total`` minus those).
    Also returns the solve times (us) of every decision and the child orders per parent.
    """
    steps: list[dict[str, float]] = []
    solves: list[float] = []
    per_parent: dict[str, int] = {}
    cur: dict[str, float] = {}
    drv_step = svc.driver.step

    def timed_step(inb: Any) -> Any:
        t = time.perf_counter()
        res = drv_step(inb)
        cur["engine"] = cur.get("engine", 0.0) + time.perf_counter() - t
        solves.extend(us for _, _, us in res.solves)
        for c in res.children:
            per_parent[c.parent_id] = per_parent.get(c.parent_id, 0) + 1
        return res

    svc.driver.step = timed_step

    def wrap(sink: Any) -> Any:
        for name, label in (("begin", "begin"), ("send_many", "send"), ("send_offsets", "offsets"),
                            ("commit", "commit")):
            orig = getattr(sink, name)

            async def timed(*a: Any, _o: Any = orig, _l: str = label, **kw: Any) -> Any:
                t = time.perf_counter()
                try:
                    return await _o(*a, **kw)
                finally:
                    cur[_l] = cur.get(_l, 0.0) + time.perf_counter() - t

            setattr(sink, name, timed)
        return sink

    if hasattr(svc.sink, "factory"):  # exactly once: one producer per input partition, made on assignment
        make = svc.sink.factory      # (their transactions run concurrently: the parts add up over them)
        svc.sink.factory = lambda tid: wrap(make(tid))
    else:
        wrap(svc.sink)
    process = svc._process

    async def timed_process(work: Any) -> None:
        cur.clear()
        n0, t = svc.children_sent, time.perf_counter()
        await process(work)
        if svc.children_sent > n0:
            total = time.perf_counter() - work.t_arrival
            steps.append({"wait": t - work.t_arrival, **cur, "other": total - (t - work.t_arrival) - sum(cur.values()),
                          "total": total, "children": float(svc.children_sent - n0)})

    svc._process = timed_process
    return steps, solves, per_parent


async def build_exactly_once(conn: Any, topics: Any, tag: str, engine: Any, metrics: Any, settings: Any,
                             member: str = "agent") -> Any:
    """The service exactly as ``mpc-agent run`` builds it (:func:`agent.app.builder.build_kafka_service`,
    default ``[kafka]`` settings: transactional delivery), with an event-time clock (replayed data)."""
    from agent.app.builder import build_kafka_service
    from agent.app.config import AgentConfig
    from agent.live.metrics import ReliabilityMetrics
    from feeds.kafka import create_topics

    group = f"bench-{member}-{tag}"
    await create_topics(conn, [topics.agent_state], compacted=True)
    cfg = AgentConfig(topics=topics, service=settings.model_copy(update={"clock": "event"}),
                      kafka={"bootstrap_servers": conn.bootstrap_servers, "group_id": group,
                             "agent_id": group})
    built = build_kafka_service(cfg, conn, metrics, ReliabilityMetrics.create(metrics.registry), engine=engine)
    return built.service


async def publish_parents(conn: Any, topic: str, stagger_s: float) -> None:
    """The 20 parent orders onto the parent-orders topic, key = symbol (as ``mpc-agent publish``)."""
    from feeds.kafka import KafkaSink
    from feeds.ports import OutRecord
    from feeds.wire import codec

    async with KafkaSink(conn) as sink:
        await sink.send_many([OutRecord(topic, codec.encode(codec.parent_from_model(p)), key=p.symbol.encode())
                              for p in parents(stagger_s)])


async def stage_parents(conn: Any, topics: Any, tag: str, settings: Any) -> None:
    """Exactly once, backlog: take the parents in BEFORE the backlog is read.

    The parent orders already on their topic would otherwise be read in the same first fetches as
    the md backlog: aiokafka may hand back one md partition's rows up to 14:10 before the
    parent-orders record, and those parents then miss their first periods (measured: 987 of 1,000
    child orders). So another agent (own group and ``agent_id``: a static member cannot change
    its subscription across a restart) first runs on an empty md topic until it holds the 20
    parents and has committed their state records; the measured agent then restores them from
    the state topic on its partition assignment, before its first fetch (the restart-and-catch-up
    path of a real agent); the parent-order records it then reads again are no-ops (``submit`` is
    idempotent per parent_id).
    """
    from prometheus_client import CollectorRegistry

    from agent.core.engine import ExecutionEngine
    from agent.live.metrics import AgentMetrics
    from feeds.kafka import create_topics

    staged = topics.model_copy(update={"md": f"{topics.md}.empty.{tag}"})
    await create_topics(conn, [staged.md], partitions=4)
    engine = ExecutionEngine(clock=time.time_ns)
    svc = await build_exactly_once(conn, staged, tag, engine, AgentMetrics.create(CollectorRegistry()), settings,
                                   member="stage")
    async with svc:
        task = asyncio.create_task(svc.run(), name="bench-stage-parents")
        while len(engine.parents) < len(SYMBOLS) and not task.done():
            await asyncio.sleep(0.01)
        svc.request_stop()
        await task  # the step in flight (the one holding the parents) commits first


async def run_agent(conn: Any, md_topic: str, t_last: int, *, stagger_s: float = 0.0,
                    publish: float | None = None, speed_x: float = 0.0,
                    exactly_once: bool = False) -> dict[str, Any]:
    """Run the service on ``md_topic`` until every symbol reached ``t_last``.

    ``exactly_once``: the service of ``mpc-agent run`` (one transaction per step), parent
    orders from the parent-orders topic; else the plain service, parents submitted directly.
    """
    from prometheus_client import CollectorRegistry

    from agent.core.engine import ExecutionEngine
    from agent.live.metrics import AgentMetrics
    from agent.live.service import AgentService
    from agent.live.settings import ServiceSection, TopicsSection
    from feeds.kafka import KafkaSink, KafkaSource, create_topics

    tag = uuid.uuid4().hex[:6]
    topics = TopicsSection(md=md_topic, parent_orders=f"bench.parents.{tag}",
                           child_orders=f"bench.children.{tag}", fills=f"bench.fills.{tag}",
                           dlq=f"{md_topic}.dlq", agent_state=f"bench.state.{tag}")
    await create_topics(conn, [topics.parent_orders, topics.child_orders, topics.fills, topics.dlq,
                               f"{topics.parent_orders}.dlq", f"{topics.fills}.dlq"])  # as agent.app.builder
    engine = ExecutionEngine(clock=time.time_ns)
    metrics = AgentMetrics.create(CollectorRegistry())
    settings = ServiceSection(poll_timeout_ms=20, max_batch_records=5000)
    if exactly_once:
        await publish_parents(conn, topics.parent_orders, stagger_s)
        if publish is None:
            await stage_parents(conn, topics, tag, settings)
        svc = await build_exactly_once(conn, topics, tag, engine, metrics, settings)
    else:
        svc = AgentService(engine, source=KafkaSource(conn, [topics.md, topics.parent_orders, topics.fills],
                                                      group_id=f"bench-agent-{tag}"),
                           sink=KafkaSink(conn), metrics=metrics, topics=topics, clock=None, settings=settings)
    steps, solve, per_parent = instrument(svc)
    async with svc:
        if not exactly_once:
            for p in parents(stagger_s):
                await svc.submit(p)
        while not svc.health()[0]:
            await asyncio.sleep(0.05)
        task = asyncio.create_task(svc.run(), name="bench-agent")
        pub = None
        if publish is not None:  # the publisher is another process, as in a deployment
            while len(engine.parents) < len(SYMBOLS) and not task.done():  # exactly once: via the topic
                await asyncio.sleep(0.01)
            pub = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--produce-only", md_topic, "--bootstrap", conn.bootstrap_servers,
                "--latency-minutes", str(publish), "--speed", str(speed_x))
        t0: float | None = None
        while len(svc.processed_ts) < len(SYMBOLS) or min(svc.processed_ts.values()) < t_last:
            if t0 is None and svc.processed_ts:
                t0 = time.perf_counter()
            if task.done():  # a failed step ends run(): report it instead of waiting forever
                await task
                raise RuntimeError("the service stopped before the end of the data")
            await asyncio.sleep(0.002)
        wall = time.perf_counter() - (t0 or time.perf_counter())
        if pub is not None:
            await pub.wait()
        svc.request_stop()
        await task
        lat = np.array(svc.decision_latencies_s) * 1e3
        snaps = svc.metrics.registry.get_sample_value("mpc_agent_snapshots_total") or 0.0
        txns = svc.metrics.registry.get_sample_value("mpc_agent_transactions_total", {"outcome": "committed"})
    return {"mode": "exactly-once" if exactly_once else "plain",
            "snapshots": int(snaps), "wall_s": wall, "rate_per_s": snaps / wall if wall > 0 else float("nan"),
            "child_orders": svc.children_sent, "solves": len(solve),
            "children_per_parent_min": min([per_parent.get(p.parent_id, 0) for p in parents(0)]),
            "transactions": int(txns) if txns is not None else None,
            "latency_ms_p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "latency_ms_p99": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
            "latency_ms_max": float(lat.max()) if len(lat) else float("nan"),
            "solve_us_p50": float(np.percentile(solve, 50)) if solve else float("nan"),
            "solve_us_p99": float(np.percentile(solve, 99)) if solve else float("nan"),
            "breakdown": breakdown(steps)}


def breakdown(steps: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50 / p99 / mean in ms of each part of the decision steps (see :func:`instrument`)."""
    out: dict[str, dict[str, float]] = {}
    for part in ("wait", "engine", "begin", "send", "offsets", "commit", "other", "total"):
        v = np.array([s.get(part, 0.0) for s in steps]) * 1e3
        if len(v) and v.any():
            out[part] = {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)),
                         "mean": float(v.mean())}
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from feeds.kafka import KafkaConnection, create_topics

    conn = KafkaConnection(bootstrap_servers=bootstrap(args.bootstrap), client_id="bench-live")
    msgs, _, t_last = workload(args.minutes)
    n = len(msgs)
    tag = uuid.uuid4().hex[:6]
    backlog = f"bench.md.{tag}"
    await create_topics(conn, [backlog], partitions=4)
    produce_s = await produce(conn, backlog, msgs)
    raw_s = await bare_consume(conn, backlog, n)
    rows: list[dict[str, Any]] = [
        {"phase": "produce", "messages": n, "wall_s": produce_s, "rate_per_s": n / produce_s},
        {"phase": "consumer (baseline)", "messages": n, "wall_s": raw_s, "rate_per_s": n / raw_s},
    ]
    targets = {"ingest_per_s": 30_000, "latency_ms_p99": 10.0}
    base_rate = n / raw_s
    for eo in (False, True):
        res = await run_agent(conn, backlog, t_last, stagger_s=args.stagger_s, exactly_once=eo)
        rows.append({"phase": "agent_backlog", "messages": n, **res, "vs_consumer": res["rate_per_s"] / base_rate,
                     "meets_target": "yes" if res["rate_per_s"] >= targets["ingest_per_s"] else "NO"})
    lat_msgs, _, lat_last = workload(args.latency_minutes)
    for stagger, eo in ((args.stagger_s, False), (args.stagger_s, True), (0.0, False)):
        topic = f"bench.md.paced.{tag}.{stagger:g}.{'eo' if eo else 'plain'}"
        await create_topics(conn, [topic], partitions=4)
        res = await run_agent(conn, topic, lat_last, stagger_s=stagger, publish=args.latency_minutes,
                              speed_x=args.speed, exactly_once=eo)
        rows.append({"phase": f"agent_paced x{args.speed:g} stagger={stagger:g}s", "messages": len(lat_msgs),
                     **res, "meets_target": "yes" if res["latency_ms_p99"] <= targets["latency_ms_p99"] else "NO"})
    by = {(r["phase"], r.get("mode")): r for r in rows}
    for r in rows:  # exactly once against plain, same phase, same run
        plain = by.get((r["phase"], "plain"))
        if r.get("mode") == "exactly-once" and plain is not None:
            r["eo_vs_plain_rate"] = r["rate_per_s"] / plain["rate_per_s"] if r["phase"] == "agent_backlog" else None
            r["eo_vs_plain_p99"] = r["latency_ms_p99"] / plain["latency_ms_p99"]
    return {"rows": rows, "targets": targets,
            "workload": {"symbols": len(SYMBOLS), "messages": n, "minutes": args.minutes,
                         "parents": len(SYMBOLS), "period_s": 60, "stagger_s": args.stagger_s,
                         "latency_minutes": args.latency_minutes, "speed_x": args.speed}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--latency-minutes", type=float, default=15.0, help="data replayed in the paced phases")
    ap.add_argument("--speed", type=float, default=20.0, help="paced phases: times real time")
    ap.add_argument("--stagger-s", type=float, default=3.0,
                    help="parent i starts i * stagger_s after 14:05 (0 = all 20 decide at once)")
    ap.add_argument("--produce-only", default=None, metavar="TOPIC", help=argparse.SUPPRESS)
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "live.json"))
    args = ap.parse_args()
    if not DATA.exists():
        print(f"missing {DATA}", file=sys.stderr)
        return 2
    if args.produce_only:
        from feeds.kafka import KafkaConnection

        msgs, ts, _ = workload(args.latency_minutes)
        asyncio.run(produce(KafkaConnection(bootstrap_servers=args.bootstrap), args.produce_only, msgs, ts,
                            args.speed))
        return 0
    try:
        res = asyncio.run(main_async(args))
    finally:
        lease = Path(os.environ.get("KAFKA_LOCAL_DIR", ROOT / ".kafka-local")) / "leases" / str(os.getpid())
        lease.unlink(missing_ok=True)
    print_table(res["rows"], ["phase", "mode", "messages", "wall_s", "rate_per_s", "vs_consumer",
                              "eo_vs_plain_rate", "solves", "child_orders", "transactions", "latency_ms_p50",
                              "latency_ms_p99", "latency_ms_max", "eo_vs_plain_p99", "solve_us_p50", "solve_us_p99",
                              "meets_target"])
    print(f"targets: ingest >= {res['targets']['ingest_per_s']:,} snapshots/s (agent_backlog), decision latency "
          f"p99 <= {res['targets']['latency_ms_p99']:g} ms (agent_paced; arrival -> ack, or -> commit with "
          "exactly once)")
    print("\ndecision steps, where the time goes (ms, p50 / p99; see instrument()):")
    parts = ["wait", "engine", "begin", "send", "offsets", "commit", "other", "total"]
    print_table([{"phase": r["phase"], "mode": r["mode"],
                  **{k: f"{v['p50']:.2f} / {v['p99']:.2f}" for k, v in r["breakdown"].items()}}
                 for r in res["rows"] if "breakdown" in r], ["phase", "mode", *parts])
    res["environment"] = environment()
    print(f"wrote {write_json(args.json, res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
