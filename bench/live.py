"""Live service on a real broker: snapshot ingest, decision latency end to end, 1,000 parent orders.

Workload: one hour of the real FROG day (2025-04-03 14:00-15:00 UTC) copied
onto 20 symbols (S00..S19, rows interleaved in time order), 20 parent orders
(one per symbol, 14:05-14:55, 60-second periods: 50 decisions each), keyed by
symbol on a 4-partition md topic. Both service modes run in the same run:

- ``plain``: idempotent producer, offsets committed every second, parents
  submitted in process;
- ``exactly-once``: the product default, the service ``mpc-agent run``
  builds (:func:`agent.app.builder.build_kafka_service`): one Kafka
  transaction per step, parent orders read from their topic (key = symbol).

Phases (same broker, same run):

1. ``consumer``: a bare ``KafkaSource`` draining the backlog (no decoding):
   the ceiling the broker and aiokafka allow here.
2. ``agent_backlog``: the service draining the same backlog with the 20
   parents (in exactly-once mode published together with the backlog: the
   parent orders must still be read before the market data past their
   start); ingest rate and its ratio to the bare consumer. Exactly once runs
   twice: as the product runs (``decode`` ``>=256``: batches that large are
   decoded in the worker process, :mod:`agent.live.book_decoder`;
   ``decoded_in_worker`` = the share of values that went there) and with
   every batch decoded on the event loop (``decode`` ``inline``), the
   worker's baseline.
3. ``agent_paced``: a publisher process replays ``--latency-minutes`` at
   ``--speed`` times real time; parents staggered by ``--stagger-s``, and all
   at once (stagger 0: 20 decisions in the same batch). Latency two ways:
   ``latency_ms`` = the service's own (batch fetched -> broker ack, or ->
   commit with transactions), and ``e2e_ms`` = snapshot handed to the
   publisher's producer -> child order seen by an outside ``read_committed``
   consumer (:mod:`bench.live_io`, confluent-kafka, its own process).
4. ``scale``: 1,000 parents on 100 symbols at 1-second periods, exactly once
   (:mod:`bench.live_scale`), with its steps over time in 5-second windows
   (``timeline``: where a backlog builds up and drains).

Where a decision step's time goes comes from the service's ``on_step``
callback (:class:`agent.live.observe.StepReport`): ``wait`` (fetched ->
engine starts), ``engine`` (the step on the engine thread), ``publish``
(engine done -> acknowledged/committed), ``total``.

Like ``mpc-agent run``, every phase runs with the started agent's heap frozen
(:mod:`agent.app.gc_tuning`; ``--gc-defaults`` leaves CPython's collector
as it is); ``gc_ms_max`` / ``gc_ms_total`` are the collector's longest pause
and total time in each phase's measured interval (``gc.callbacks``).

Usage::

    .venv/bin/python bench/live.py [--bootstrap H:P] [--minutes 60] [--speed 20] [--json out.json]

Prints tables and writes JSON (bench/out/live.json).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import environment, print_table, write_json  # noqa: E402
from bench.live_io import ChildWatcher, bootstrap, percentiles, produce, release_lease  # noqa: E402

DATA = ROOT / ".." / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"
NS = 1_000_000_000
DAY0 = 1_743_638_400 * NS
SYMBOLS = [f"S{i:02d}" for i in range(20)]
TARGETS = {"ingest_per_s": 50_000, "ingest_vs_consumer": 0.30, "latency_ms_p50": 3.0, "latency_ms_p99": 10.0,
           "latency_ms_p99_one_batch": 25.0}
KAFKA_EXTRA: dict[str, Any] = {}  # KafkaSection fields set from the command line (--idle-offsets-ms)
# ServiceSection fields from the command line: --md-buffer-rows (backlog and paced phases),
# --decode-worker-min-records (every phase, the scale phase too)
SERVICE_EXTRA: dict[str, Any] = {}
GC_TUNING = [True]  # agent.app.gc_tuning after the first service starts, as `mpc-agent run` does (--gc-defaults)


class CollectorWatch:
    """The garbage collector's pauses while a phase runs (``gc.callbacks``): count, total and longest."""

    def __init__(self) -> None:
        self.n, self.total_s, self.max_s, self._t = 0, 0.0, 0.0, 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
            return
        d = time.perf_counter() - self._t
        self.n, self.total_s, self.max_s = self.n + 1, self.total_s + d, max(self.max_s, d)

    def __enter__(self) -> CollectorWatch:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def row(self) -> dict[str, float]:
        return {"gc_collections": self.n, "gc_ms_total": 1e3 * self.total_s, "gc_ms_max": 1e3 * self.max_s}


def tune_gc_like_the_agent() -> None:
    """What ``mpc-agent run`` does to the collector once its service started (unless --gc-defaults)."""
    from agent.app.gc_tuning import tune_gc

    if GC_TUNING[0]:
        tune_gc()


def day_window(minutes: float) -> Any:
    """The FROG day's rows from 14:00 UTC for ``minutes`` (a ``BookBatch``): what every phase replays."""
    from feeds.files.readers import read_book

    book = read_book(DATA).batch
    ts = book.ts_event
    t0 = DAY0 + 14 * 3600 * NS
    return book[int(np.searchsorted(ts, t0)):int(np.searchsorted(ts, t0 + int(minutes * 60) * NS))]


def workload(minutes: float) -> tuple[list[tuple[bytes, bytes]], np.ndarray, int]:
    """(key, value) messages of 20 symbols in time order, their ts_event, the last ts_event."""
    from feeds.file_feed import encode_rows

    part = day_window(minutes)
    base = [r.value for r in encode_rows(part, "md")]
    assert all(v is not None for v in base)
    msgs = [(s.encode(), v.replace(b'"symbol":"FROG"', f'"symbol":"{s}"'.encode()))  # type: ignore[union-attr]
            for v in base for s in SYMBOLS]
    return msgs, np.repeat(part.ts_event, len(SYMBOLS)), int(part.ts_event[-1])


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


async def build_service(conn: Any, topics: Any, engine: Any, metrics: Any, settings: Any, *, exactly_once: bool,
                        on_step: Any, clock: str = "event") -> Any:
    """The service as ``mpc-agent run`` builds it (:func:`agent.app.builder.build_kafka_service`)."""
    from agent.app.builder import build_kafka_service, ensure_topics
    from agent.app.config import AgentConfig
    from agent.live.metrics import ReliabilityMetrics
    from agent.live.settings import KafkaSection
    from feeds.kafka import create_topics

    group = f"bench-agent-{uuid.uuid4().hex[:6]}"
    # keyed by symbol with the md topic's partition count (partition p of each input topic: the same symbols)
    await create_topics(conn, [topics.parent_orders, topics.fills], partitions=4)
    cfg = AgentConfig(topics=topics, service=settings.model_copy(update={"clock": clock}),
                      kafka=KafkaSection(bootstrap_servers=conn.bootstrap_servers, group_id=group, agent_id=group,
                                         exactly_once=exactly_once, **KAFKA_EXTRA))
    await ensure_topics(conn, cfg)
    built = build_kafka_service(cfg, conn, metrics, ReliabilityMetrics.create(metrics.registry), engine=engine)
    built.service.on_step = on_step
    return built.service


async def publish_parents(conn: Any, topic: str, items: list[Any]) -> None:
    """Parent orders onto the parent-orders topic, key = symbol (as ``mpc-agent publish``)."""
    from feeds.kafka import KafkaSink
    from feeds.ports import OutRecord
    from feeds.wire import codec

    async with KafkaSink(conn) as sink:
        await sink.send_many([OutRecord(topic, codec.encode(codec.parent_from_model(p)), key=p.symbol.encode())
                              for p in items])


def step_breakdown(reports: list[Any]) -> dict[str, dict[str, float]]:
    """p50 / p99 in ms of the parts of the steps that sent child orders (``StepReport``)."""
    steps = [r for r in reports if r.children]
    parts = {"wait": [r.t_engine_start - r.t_fetched for r in steps],
             "engine": [r.t_engine_end - r.t_engine_start for r in steps],
             "engine_cpu": [r.engine_cpu_s for r in steps],  # thread CPU time: the wall time less GIL waits and preemption
             "publish": [r.t_published - r.t_engine_end for r in steps],
             "total": [r.latency_s for r in steps]}
    return {k: {"p50": float(np.percentile(v, 50)) * 1e3, "p99": float(np.percentile(v, 99)) * 1e3}
            for k, v in parts.items() if v}


def step_timeline(reports: list[Any], window_s: float = 5.0) -> list[dict[str, float]]:
    """Steps per ``window_s`` window of the run (by fetch time): how many, their decisions, the
    engine's CPU share and p50 / max step time (ms) -- where a backlog builds up and drains. Also
    the engine's wall-time share (above its CPU share: the engine thread waited for the GIL or a
    core) and its CPU per decision (in steps that decided)."""
    if not reports:
        return []
    t0 = reports[0].t_fetched
    out: list[dict[str, float]] = []
    for w in range(int((reports[-1].t_fetched - t0) // window_s) + 1):
        rs = [r for r in reports if w * window_s <= r.t_fetched - t0 < (w + 1) * window_s]
        if rs:
            eng = [1e3 * (r.t_engine_end - r.t_engine_start) for r in rs]
            deciding = [r for r in rs if r.decisions]
            n_dec = sum(r.decisions for r in deciding)
            out.append({"t_s": w * window_s, "steps": len(rs), "decisions": sum(r.decisions for r in rs),
                        "engine_cpu_share": sum(r.engine_cpu_s for r in rs) / window_s,
                        "engine_wall_share": sum(eng) / 1e3 / window_s,
                        "cpu_us_per_decision": 1e6 * sum(r.engine_cpu_s for r in deciding) / n_dec if n_dec else 0.0,
                        "wait_ms_p50": float(np.median([1e3 * (r.t_engine_start - r.t_fetched) for r in rs])),
                        "engine_ms_p50": float(np.median(eng)), "engine_ms_max": max(eng),
                        "publish_ms_p50": float(np.median([1e3 * (r.t_published - r.t_engine_end) for r in rs])),
                        "total_ms_p50": float(np.median([1e3 * r.latency_s for r in rs]))})
    return out


def e2e_ms(seen: list[dict[str, Any]], stamps: dict[tuple[str, int], int]) -> list[float]:
    """Snapshot handed to the publisher -> child order seen read_committed, per child (ms)."""
    return [(c["received_ns"] - stamps[(c["symbol"], c["ts_event"])]) / 1e6 for c in seen
            if (c["symbol"], c["ts_event"]) in stamps]


async def run_agent(conn: Any, md_topic: str, t_last: int, *, stagger_s: float = 0.0, paced: float | None = None,
                    speed_x: float = 0.0, exactly_once: bool = False,
                    service: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the service on ``md_topic`` until every symbol reached ``t_last`` (see the module docstring);
    ``service``: ServiceSection fields of this run (over ``SERVICE_EXTRA``)."""
    from prometheus_client import CollectorRegistry

    from agent.core.engine import ExecutionEngine
    from agent.live.metrics import AgentMetrics
    from agent.live.settings import ServiceSection, TopicsSection

    tag = uuid.uuid4().hex[:6]
    topics = TopicsSection(md=md_topic, parent_orders=f"bench.parents.{tag}", child_orders=f"bench.children.{tag}",
                           fills=f"bench.fills.{tag}", dlq=f"{md_topic}.dlq", agent_state=f"bench.state.{tag}")
    engine = ExecutionEngine(clock=time.time_ns)
    metrics = AgentMetrics.create(CollectorRegistry())
    reports: list[Any] = []
    # the data stand in for a live feed: market records at the wall clock's interval (not the event
    # clock's exact every-step records, which are for re-processing history: agent.live.delivery)
    settings = ServiceSection(poll_timeout_ms=20, market_state_interval_s=10.0,
                              **({"max_batch_records": 5000} | SERVICE_EXTRA | (service or {})))
    svc = await build_service(conn, topics, engine, metrics, settings, exactly_once=exactly_once,
                              on_step=reports.append)
    items = parents(stagger_s)
    if exactly_once:
        await publish_parents(conn, topics.parent_orders, items)
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    watcher = ChildWatcher(conn.bootstrap_servers, topics.child_orders, tmp / "children.json") if paced else None
    async with svc:
        tune_gc_like_the_agent()
        if not exactly_once:
            for p in items:
                await svc.submit(p)
        while not svc.health()[0]:
            await asyncio.sleep(0.05)
        task = asyncio.create_task(svc.run(), name="bench-agent")
        pub = None
        if paced is not None:  # the publisher is another process, as in a deployment
            while len(engine.parents) < len(SYMBOLS) and not task.done():
                await asyncio.sleep(0.01)
            assert watcher is not None
            await watcher.start()
            pub = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--produce-only", md_topic, "--bootstrap", conn.bootstrap_servers,
                "--latency-minutes", str(paced), "--speed", str(speed_x), "--stamps", str(tmp / "stamps.npy"))
        cpu0, t0 = svc.engine_cpu_s, None
        with CollectorWatch() as collector:
            while len(svc.processed_ts) < len(SYMBOLS) or min(svc.processed_ts.values()) < t_last:
                if t0 is None and svc.processed_ts:
                    t0, cpu0 = time.perf_counter(), svc.engine_cpu_s
                if task.done():  # a failed step ends run(): report it instead of waiting forever
                    await task
                    raise RuntimeError("the service stopped before the end of the data")
                await asyncio.sleep(0.002)
        wall = time.perf_counter() - (t0 or time.perf_counter())
        cpu = svc.engine_cpu_s - cpu0
        if pub is not None:
            await pub.wait()
        seen = await watcher.finish() if watcher is not None else []
        svc.request_stop()
        await task
        lat = np.array(svc.decision_latencies_s) * 1e3
        snaps = svc.metrics.registry.get_sample_value("mpc_agent_snapshots_total") or 0.0
        offloaded = svc.metrics.registry.get_sample_value("mpc_agent_md_decoded_total", {"where": "process"}) or 0.0
        decoded = offloaded + (svc.metrics.registry.get_sample_value("mpc_agent_md_decoded_total",
                                                                     {"where": "inline"}) or 0.0)
        txns = svc.metrics.registry.get_sample_value("mpc_agent_transactions_total", {"outcome": "committed"})
    out: dict[str, Any] = {
        "mode": "exactly-once" if exactly_once else "plain", "snapshots": int(snaps), "wall_s": wall,
        "decode": "inline" if not settings.decode_worker_min_records else f">={settings.decode_worker_min_records}",
        "decoded_in_worker": offloaded / decoded if decoded else 0.0,
        "rate_per_s": snaps / wall if wall > 0 else float("nan"), "child_orders": svc.children_sent,
        "expected_children": sum(len([k for k in range(p.n_periods) if p.period_start_ns(k) <= t_last])
                                 for p in items),
        "transactions": int(txns) if txns is not None else None, "engine_cpu_share": cpu / wall if wall else None,
        **percentiles(lat, "latency_ms"), **collector.row(), "breakdown": step_breakdown(reports)}
    if paced:
        msgs, ts, _ = workload(paced)
        pub_ns = np.load(tmp / "stamps.npy")
        stamps: dict[tuple[str, int], int] = {}
        for (k, _v), t, p in zip(msgs, ts.tolist(), pub_ns.tolist(), strict=True):
            stamps.setdefault((k.decode(), int(t)), int(p))
        out.update(percentiles(e2e_ms(seen, stamps), "e2e_ms"), children_seen=len(seen))
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from bench.live_scale import run_scale
    from feeds.kafka import KafkaConnection, create_topics

    conn = KafkaConnection(bootstrap_servers=bootstrap(args.bootstrap), client_id="bench-live")
    rows: list[dict[str, Any]] = []
    if not args.scale_only:
        msgs, _, t_last = workload(args.minutes)
        n = len(msgs)
        backlog = f"bench.md.{uuid.uuid4().hex[:6]}"
        await create_topics(conn, [backlog], partitions=4)
        produce_s = await produce(conn, backlog, msgs)
        raw_s = await bare_consume(conn, backlog, n)
        rows += [{"phase": "produce", "messages": n, "wall_s": produce_s, "rate_per_s": n / produce_s},
                 {"phase": "consumer (baseline)", "messages": n, "wall_s": raw_s, "rate_per_s": n / raw_s}]
        # the product (large batches decoded in the worker process), and exactly once decoding every batch
        # on the event loop: the decode worker's baseline in the same run
        for eo, service in ((False, None), (True, None), (True, {"decode_worker_min_records": 0})):
            res = await run_agent(conn, backlog, t_last, stagger_s=args.stagger_s, exactly_once=eo, service=service)
            rows.append({"phase": "agent_backlog", "messages": n, **res, "vs_consumer": res["rate_per_s"] * raw_s / n})
        _, _, lat_last = workload(args.latency_minutes)
        for stagger, eo in ((args.stagger_s, False), (args.stagger_s, True), (0.0, False), (0.0, True)):
            topic = f"bench.md.paced.{uuid.uuid4().hex[:6]}"
            await create_topics(conn, [topic], partitions=4)
            res = await run_agent(conn, topic, lat_last, stagger_s=stagger, paced=args.latency_minutes,
                                  speed_x=args.speed, exactly_once=eo)
            rows.append({"phase": f"agent_paced x{args.speed:g} stagger={stagger:g}s", **res})
    if not args.skip_scale:
        rows.append(await run_scale(conn, parents=args.scale_parents, symbols=args.scale_symbols,
                                    periods=args.scale_periods, snapshots_per_s=args.scale_rate,
                                    service={k: v for k, v in SERVICE_EXTRA.items()
                                             if k in ("decode_worker_min_records", "engine_runner")}))
    return {"rows": rows, "targets": TARGETS, "load_average": os.getloadavg(),
            "workload": {"symbols": len(SYMBOLS), "minutes": args.minutes, "parents": len(SYMBOLS), "period_s": 60,
                         "stagger_s": args.stagger_s, "latency_minutes": args.latency_minutes, "speed_x": args.speed}}


def report(res: dict[str, Any]) -> None:
    rows = res["rows"]
    print_table([r for r in rows if r["phase"] != "scale"],
                ["phase", "mode", "decode", "decoded_in_worker", "messages", "wall_s", "rate_per_s", "vs_consumer", "child_orders",
                 "expected_children", "children_seen", "transactions", "latency_ms_p50", "latency_ms_p99",
                 "latency_ms_max", "e2e_ms_p50", "e2e_ms_p99", "e2e_ms_max", "engine_cpu_share", "gc_ms_max",
                 "gc_ms_total"])
    t = res["targets"]
    print(f"targets (exactly once): ingest >= {t['ingest_per_s']:,}/s and >= {t['ingest_vs_consumer']:.0%} of the "
          f"consumer; latency p50 <= {t['latency_ms_p50']:g} ms, p99 <= {t['latency_ms_p99']:g} ms staggered, "
          f"p99 <= {t['latency_ms_p99_one_batch']:g} ms with 20 parents deciding in one batch")
    print("\ndecision steps, where the time goes (ms, p50 / p99; StepReport; engine_cpu: the engine thread's CPU time):")
    print_table([{"phase": r["phase"], "mode": r["mode"],
                  **{k: f"{v['p50']:.2f} / {v['p99']:.2f}" for k, v in r["breakdown"].items()}}
                 for r in rows if r.get("breakdown")], ["phase", "mode", "wait", "engine", "engine_cpu", "publish", "total"])
    scale = [r for r in rows if r["phase"] == "scale"]
    if scale:
        print("\nscale: parents on symbols at 1-second periods, exactly once (bench/live_scale.py)")
        print_table(scale, ["parents", "symbols", "periods", "snapshots_per_s", "expected_children", "children_seen",
                            "skipped", "late", "lateness_ms_p50", "lateness_ms_p99", "lateness_ms_max", "e2e_ms_p50",
                            "e2e_ms_p99", "decided_ms_p50", "decided_ms_p99", "visible_ms_p50", "visible_ms_p99",
                            "engine_cpu_share", "process_cpu_share", "decoded_in_worker",
                            "worker_cpu_share", "transactions", "gc_ms_max",
                            "gc_ms_total"])
        print("the agent's own account (mpc_agent_decisions_total by outcome, mpc_agent_decisions_late_total):")
        print_table(scale, ["children_seen", "agent_children", "skipped", "agent_stale_skips", "late", "agent_late"])
        print("who used the machine while the market ran, in cores (other: the broker and the system):")
        print_table(scale, ["agent_cores", "engine_cpu_share", "publisher_cores", "watcher_cores", "other_cores",
                            "machine_busy_cores", "machine_idle_cores"])
        print("the same scenario through the engine driver alone, in a simulated clock (engine_capacity):")
        print_table(scale, ["parents", "symbols", "periods", "sim_engine_cpu_share", "sim_us_per_decision",
                            "sim_skipped", "sim_late", "sim_lateness_ms_p99"])
        for r in scale:
            if r.get("timeline"):
                print("the scale run over time (steps by fetch time; engine_cpu_share of the window):")
                print_table(r["timeline"], ["t_s", "steps", "decisions", "engine_cpu_share", "engine_wall_share",
                                            "cpu_us_per_decision", "wait_ms_p50",
                                            "engine_ms_p50", "engine_ms_max", "publish_ms_p50", "total_ms_p50"])
    print(f"load average {res['load_average'][0]:.2f} / {res['load_average'][1]:.2f} / {res['load_average'][2]:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--latency-minutes", type=float, default=15.0, help="data replayed in the paced phases")
    ap.add_argument("--speed", type=float, default=20.0, help="paced phases: times real time")
    ap.add_argument("--stagger-s", type=float, default=3.0, help="parent i starts i * stagger_s after 14:05")
    ap.add_argument("--scale-parents", type=int, default=1000)
    ap.add_argument("--scale-symbols", type=int, default=100)
    ap.add_argument("--scale-periods", type=int, default=60, help="periods (seconds) of each scale parent")
    ap.add_argument("--scale-rate", type=float, default=20.0, help="snapshots per second and symbol (scale)")
    ap.add_argument("--idle-offsets-ms", type=float, default=None,
                    help="kafka.idle_offsets_commit_ms of the agents (default: the product's)")
    ap.add_argument("--md-buffer-rows", type=int, default=None,
                    help="service.md_buffer_rows of the backlog and paced phases (default: the product's)")
    ap.add_argument("--decode-worker-min-records", default=None, metavar="N|none",
                    help="service.decode_worker_min_records of the phases (default: the product's; none = every "
                         "batch decoded on the event loop)")
    ap.add_argument("--engine-runner", choices=["thread", "loop"], default=None,
                    help="service.engine_runner of every phase (default: the product's; agent.live.engine_runner)")
    ap.add_argument("--gc-defaults", action="store_true",
                    help="leave the garbage collector as CPython sets it (the agent freezes its startup heap: "
                         "agent.app.gc_tuning)")
    ap.add_argument("--scale-only", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--produce-only", default=None, metavar="TOPIC", help=argparse.SUPPRESS)
    ap.add_argument("--stamps", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "live.json"))
    args = ap.parse_args()
    if not DATA.exists() and not args.scale_only:
        print(f"missing {DATA}", file=sys.stderr)
        return 2
    if args.produce_only:
        from feeds.kafka import KafkaConnection

        msgs, ts, _ = workload(args.latency_minutes)
        stamps = np.zeros(len(msgs), dtype=np.int64)
        asyncio.run(produce(KafkaConnection(bootstrap_servers=args.bootstrap), args.produce_only, msgs, ts,
                            args.speed, stamps))
        if args.stamps:
            np.save(args.stamps, stamps)
        return 0
    if args.idle_offsets_ms is not None:
        KAFKA_EXTRA["idle_offsets_commit_ms"] = args.idle_offsets_ms
    if args.md_buffer_rows is not None:
        SERVICE_EXTRA["md_buffer_rows"] = args.md_buffer_rows
    if args.decode_worker_min_records is not None:
        n_min = args.decode_worker_min_records
        SERVICE_EXTRA["decode_worker_min_records"] = 0 if n_min.lower() == "none" else int(n_min)
    if args.engine_runner is not None:
        SERVICE_EXTRA["engine_runner"] = args.engine_runner
    GC_TUNING[0] = not args.gc_defaults
    try:
        res = asyncio.run(main_async(args))
    finally:
        release_lease()
    res["overrides"] = {"kafka": dict(KAFKA_EXTRA), "service": dict(SERVICE_EXTRA), "gc_defaults": args.gc_defaults}
    report(res)
    res["environment"] = environment()
    print(f"wrote {write_json(args.json, res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
