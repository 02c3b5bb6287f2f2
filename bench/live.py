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
   Run twice: parent starts staggered by ``--stagger-s`` seconds (decisions
   spread over the period, as on a desk) and all at 14:05 (stagger 0: the 20
   symbols carry the same data, so 20 decisions fall in the same batch and are
   solved one after the other on the engine thread: the worst case).

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
    from feeds.readers import read_book

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
    from agent.model import ParentOrder

    out = []
    for i, s in enumerate(SYMBOLS):
        start = DAY0 + (14 * 3600 + 300) * NS + int(i * stagger_s * NS)
        out.append(ParentOrder(f"P-{s}", s, "buy" if i % 2 == 0 else "sell", 5000.0, start,
                               start + 50 * 60 * NS, period_s=60.0))
    return out


async def run_agent(conn: Any, md_topic: str, t_last: int, *, stagger_s: float = 0.0,
                    publish: float | None = None, speed_x: float = 0.0) -> dict[str, Any]:
    """Run the service on ``md_topic`` until every symbol reached ``t_last``."""
    from prometheus_client import CollectorRegistry

    from agent.config import ServiceSection, TopicsSection
    from agent.engine import ExecutionEngine
    from agent.metrics import AgentMetrics
    from agent.service import AgentService
    from feeds.kafka import KafkaSink, KafkaSource, create_topics

    tag = uuid.uuid4().hex[:6]
    topics = TopicsSection(md=md_topic, parent_orders=f"bench.parents.{tag}",
                           child_orders=f"bench.children.{tag}", fills=f"bench.fills.{tag}",
                           dlq=f"{md_topic}.dlq")
    await create_topics(conn, [topics.parent_orders, topics.child_orders, topics.fills, topics.dlq])
    engine = ExecutionEngine(clock=time.time_ns)
    svc = AgentService(engine, source=KafkaSource(conn, [topics.md, topics.parent_orders, topics.fills],
                                                  group_id=f"bench-agent-{tag}"),
                       sink=KafkaSink(conn), metrics=AgentMetrics.create(CollectorRegistry()), topics=topics,
                       clock=None, settings=ServiceSection(poll_timeout_ms=20, max_batch_records=5000))
    async with svc:
        for p in parents(stagger_s):
            await svc.submit(p)
        while not svc.health()[0]:
            await asyncio.sleep(0.05)
        task = asyncio.create_task(svc.run(), name="bench-agent")
        pub = None
        if publish is not None:  # the publisher is another process, as in a deployment
            pub = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--produce-only", md_topic, "--bootstrap", conn.bootstrap_servers,
                "--latency-minutes", str(publish), "--speed", str(speed_x))
        t0: float | None = None
        while len(svc.processed_ts) < len(SYMBOLS) or min(svc.processed_ts.values()) < t_last:
            if t0 is None and svc.processed_ts:
                t0 = time.perf_counter()
            await asyncio.sleep(0.002)
        wall = time.perf_counter() - (t0 or time.perf_counter())
        if pub is not None:
            await pub.wait()
        svc.request_stop()
        await task
        lat = np.array(svc.decision_latencies_s) * 1e3
        snaps = svc.metrics.registry.get_sample_value("mpc_agent_snapshots_total") or 0.0
        solve = [d.plan.solver.solve_us for d in engine.decisions if d.plan is not None]
    return {"snapshots": int(snaps), "wall_s": wall, "rate_per_s": snaps / wall if wall > 0 else float("nan"),
            "child_orders": svc.children_sent, "decisions": len(engine.decisions),
            "latency_ms_p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "latency_ms_p99": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
            "latency_ms_max": float(lat.max()) if len(lat) else float("nan"),
            "solve_us_p50": float(np.percentile(solve, 50)) if solve else float("nan"),
            "solve_us_p99": float(np.percentile(solve, 99)) if solve else float("nan")}


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
    backlog_res = await run_agent(conn, backlog, t_last, stagger_s=args.stagger_s)
    rows.append({"phase": "agent_backlog", "messages": n, **backlog_res,
                 "vs_consumer": backlog_res["rate_per_s"] / (n / raw_s)})
    lat_msgs, _, lat_last = workload(args.latency_minutes)
    for stagger in (args.stagger_s, 0.0):
        topic = f"bench.md.paced.{tag}.{stagger:g}"
        await create_topics(conn, [topic], partitions=4)
        res = await run_agent(conn, topic, lat_last, stagger_s=stagger, publish=args.latency_minutes,
                              speed_x=args.speed)
        rows.append({"phase": f"agent_paced x{args.speed:g} stagger={stagger:g}s", "messages": len(lat_msgs),
                     **res})
    return {"rows": rows, "targets": {"ingest_per_s": 30_000, "latency_ms_p99": 10.0},
            "workload": {"symbols": len(SYMBOLS), "messages": n, "minutes": args.minutes,
                         "parents": len(SYMBOLS), "period_s": 60, "stagger_s": args.stagger_s}}


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
    print_table(res["rows"], ["phase", "messages", "wall_s", "rate_per_s", "vs_consumer", "decisions",
                              "child_orders", "latency_ms_p50", "latency_ms_p99", "latency_ms_max",
                              "solve_us_p50", "solve_us_p99"])
    res["environment"] = environment()
    print(f"wrote {write_json(args.json, res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
