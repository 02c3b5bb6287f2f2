"""Scale: one agent, 1,000 parent orders on 100 symbols at 1-second periods, exactly once, in real time.

The market is synthetic and live: a publisher process sends, ``--rate`` times a
second, one MBP-10 snapshot of every symbol stamped with the wall clock
(``ts_event`` = the time it is handed to the producer; a random walk on a
1-cent grid, a trade every tenth snapshot). The agent is the exactly-once
service ``mpc-agent run`` builds (wall clock, transactions); its 1,000 parents
come from the parent-order topic, 10 per symbol, 1-second periods, their
starts spread evenly over one second (a decision every millisecond).

An outside ``read_committed`` consumer (:class:`bench.live_io.ChildWatcher`)
records when each child order becomes visible. Reported:

- ``skipped``: periods of a parent without a child order (expected: every
  period trades, the quantities are far below the caps: ``SHARES_PER_PERIOD``);
- ``late``: child orders visible more than one period after their boundary
  (``lateness`` = visible - ``start + k * period``, wall clock = event time);
- ``e2e_ms``: visible - the decision snapshot's ``ts_event`` (its publish time),
  in two parts: ``decided_ms`` = the child's ``ts_init`` (when the engine
  decided, wall clock) - ``ts_event`` (broker, consumer, queue and engine
  before the decision), and ``visible_ms`` = visible - ``ts_init`` (the rest
  of the step, the transaction, the outside consumer);
- ``engine_cpu_share``: CPU time of the engine thread / wall time while the
  market runs (target < 0.8), next to the whole process's;
- the agent's own account, from its metrics: ``agent_children``,
  ``agent_stale_skips`` (``mpc_agent_decisions_total`` by outcome) and
  ``agent_late`` (``mpc_agent_decisions_late_total``: acked more than a period
  after the boundary, skipped periods included; the outside ``late`` counts
  child orders only, from when they became visible, a little after the ack).

On a shared machine the live run measures the machine as much as the agent
(a process that gets 40% of a core cannot keep up, however little it needs),
so :func:`engine_capacity` also replays the same scenario through the engine
driver alone, in a simulated clock, with a step every ``step_ms``:
``sim_engine_cpu_share`` = engine CPU time (steps, catch-ups and state
records) / simulated seconds, with decisions skipped or late counted in that clock.

Run from ``bench/live.py`` (``--scale-only`` for this phase alone); the
publisher entry point is ``python bench/live_scale.py publish ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from bench.live_io import ChildWatcher, percentiles  # noqa: E402

NS = 1_000_000_000
SHARES_PER_PERIOD = 2
"""A scale parent's quantity per period. Nothing fills here (no venue), so a parent's schedule falls
behind; at 20 a period every decision from ~30 s on was bound by the participation caps in every
period, a closed form without a QP (measured in the simulated clock: ~440 against ~750 us a
decision), which made the second half of a 60-period run cheaper than real decisions. At 2 the QP
is solved in every period but the last few."""


def scale_parents(n: int, symbols: list[str], t0: int, periods: int) -> list[Any]:
    """``n`` parents round-robin on ``symbols``, starts spread evenly over the second after ``t0``."""
    from agent.core.model import ParentOrder

    out = []
    for i in range(n):
        start = t0 + i * NS // n
        out.append(ParentOrder(f"Q{i:04d}", symbols[i % len(symbols)], "buy" if i % 2 else "sell",
                               float(SHARES_PER_PERIOD * periods), start, start + periods * NS, period_s=1.0))
    return out


def proc_cpu_s(pid: int | None) -> float:
    """CPU seconds of process ``pid`` so far (0 without one, or off Linux)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far, all cores (0 off Linux): ``/proc/stat``
    without idle and iowait."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # user..steal - idle - iowait


async def run_scale(conn: Any, *, parents: int, symbols: int, periods: int, snapshots_per_s: float,
                    lead_s: float = 8.0, service: dict[str, Any] | None = None) -> dict[str, Any]:
    """The scale phase (see the module docstring); returns one result row. ``service``: ServiceSection
    fields of the agent (``--decode-worker-min-records``)."""
    from prometheus_client import CollectorRegistry

    from agent.core.engine import ExecutionEngine
    from agent.live.metrics import AgentMetrics
    from agent.live.settings import ServiceSection, TopicsSection
    from bench.live import (
        CollectorWatch,
        build_service,
        publish_parents,
        step_breakdown,
        step_timeline,
        tune_gc_like_the_agent,
    )
    from feeds.kafka import create_topics

    tag = uuid.uuid4().hex[:6]
    topics = TopicsSection(md=f"bench.scale.md.{tag}", parent_orders=f"bench.scale.parents.{tag}",
                           child_orders=f"bench.scale.children.{tag}", fills=f"bench.scale.fills.{tag}",
                           dlq=f"bench.scale.md.{tag}.dlq", agent_state=f"bench.scale.state.{tag}")
    await create_topics(conn, [topics.md, topics.parent_orders, topics.fills], partitions=4)
    names = [f"Z{i:03d}" for i in range(symbols)]
    t0 = (time.time_ns() // NS + int(lead_s)) * NS
    items = scale_parents(parents, names, t0, periods)
    engine = ExecutionEngine(clock=time.time_ns)
    metrics = AgentMetrics.create(CollectorRegistry())
    reports: list[Any] = []
    settings = ServiceSection(poll_timeout_ms=5, max_batch_records=5000, **(service or {}))
    svc = await build_service(conn, topics, engine, metrics, settings, exactly_once=True, on_step=reports.append,
                              clock="wall")
    await publish_parents(conn, topics.parent_orders, items)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    watcher = ChildWatcher(conn.bootstrap_servers, topics.child_orders, tmp / "children.json")
    async with svc:
        tune_gc_like_the_agent()
        task = asyncio.create_task(svc.run(), name="bench-scale-agent")
        while len(engine.parents) < parents and not task.done() and time.time_ns() < t0:
            await asyncio.sleep(0.01)
        await watcher.start()
        until = max(p.end_ns for p in items) + NS // 2
        pub = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "publish", "--bootstrap", conn.bootstrap_servers, "--topic", topics.md,
            "--symbols", str(symbols), "--rate", str(snapshots_per_s), "--until", str(until),
            "--cpu-from", str(t0), stdout=asyncio.subprocess.PIPE)
        while time.time_ns() < t0 and not task.done():
            await asyncio.sleep(0.005)
        watch_pid = watcher.proc.pid if watcher.proc is not None else None
        cpu0, proc0, wall0 = svc.engine_cpu_s, time.process_time(), time.perf_counter()
        worker0, watch0, busy0 = proc_cpu_s(svc.decoder.pid), proc_cpu_s(watch_pid), machine_busy_s()
        with CollectorWatch() as collector:
            out, _ = await pub.communicate()
        wall = time.perf_counter() - wall0
        cpu, proc = svc.engine_cpu_s - cpu0, time.process_time() - proc0
        worker, watch = proc_cpu_s(svc.decoder.pid) - worker0, proc_cpu_s(watch_pid) - watch0
        busy = machine_busy_s() - busy0
        publisher = float(json.loads(out.decode().strip().splitlines()[-1])["cpu_s"])
        seen = await watcher.finish(linger_s=2.0)
        if task.done():
            await task
        svc.request_stop()
        await task
        txns = metrics.registry.get_sample_value("mpc_agent_transactions_total", {"outcome": "committed"})
        offloaded = metrics.registry.get_sample_value("mpc_agent_md_decoded_total", {"where": "process"}) or 0.0
        inline = metrics.registry.get_sample_value("mpc_agent_md_decoded_total", {"where": "inline"}) or 0.0
        own = {"agent_children": "child_order", "agent_stale_skips": "stale_book"}
        agent = {k: int(metrics.registry.get_sample_value("mpc_agent_decisions_total", {"outcome": v}) or 0)
                 for k, v in own.items()}
        agent["agent_late"] = int(metrics.registry.get_sample_value("mpc_agent_decisions_late_total") or 0)
    by_id = {p.parent_id: p for p in items}
    expected = {f"{p.parent_id}:{k}" for p in items for k in range(periods)}
    got = {c["child_order_id"]: c for c in seen}
    lateness = [(c["received_ns"] - by_id[c["child_order_id"].rsplit(":", 1)[0]].period_start_ns(c["period_index"]))
                / 1e6 for c in got.values()]
    e2e = [(c["received_ns"] - c["ts_event"]) / 1e6 for c in got.values()]
    to_decision = [(c["ts_init"] - c["ts_event"]) / 1e6 for c in got.values()]
    to_visible = [(c["received_ns"] - c["ts_init"]) / 1e6 for c in got.values()]
    return {"phase": "scale", "mode": "exactly-once", "parents": parents, "symbols": symbols, "periods": periods,
            "snapshots_per_s": snapshots_per_s * symbols, "expected_children": len(expected),
            "children_seen": len(got), "skipped": len(expected - set(got)),
            "late": int(np.sum(np.asarray(lateness) > 1000.0)), **agent, **percentiles(lateness, "lateness_ms"),
            **percentiles(e2e, "e2e_ms"), **percentiles(to_decision, "decided_ms"),
            **percentiles(to_visible, "visible_ms"), "engine_cpu_share": cpu / wall, "process_cpu_share": proc / wall,
            "decoded_in_worker": offloaded / (offloaded + inline) if offloaded + inline else 0.0,
            "worker_cpu_share": worker / wall, **machine_budget(wall, process=proc, worker=worker,
                                                                publisher=publisher, watcher=watch, busy=busy),
            "transactions": int(txns) if txns is not None else None, "wall_s": wall, **collector.row(),
            "breakdown": step_breakdown(reports), "timeline": step_timeline(reports),
            **engine_capacity(parents=parents, symbols=symbols, periods=periods, snapshots_per_s=snapshots_per_s)}


def machine_budget(wall: float, *, process: float, worker: float, publisher: float, watcher: float,
                   busy: float) -> dict[str, float]:
    """Who used the machine while the market ran, in cores: the agent (its process and decode
    worker), the benchmark's own load (publisher, outside consumer), and the rest (the broker,
    the system) as the machine's busy time less those; ``machine_idle_cores`` of ``os.cpu_count()``."""
    cores = os.cpu_count() or 1
    agent, load = (process + worker) / wall, (publisher + watcher) / wall
    machine = busy / wall
    return {"agent_cores": agent, "bench_load_cores": load, "publisher_cores": publisher / wall,
            "watcher_cores": watcher / wall, "other_cores": max(machine - agent - load, 0.0),
            "machine_busy_cores": machine, "machine_idle_cores": max(cores - machine, 0.0)}


def engine_capacity(*, parents: int, symbols: int, periods: int, snapshots_per_s: float,
                    step_ms: float = 20.0, buffer_rows: int = 2000) -> dict[str, Any]:
    """The scale scenario through :class:`agent.live.engine_step.EngineDriver` alone (see the module
    docstring): ``sim_engine_cpu_share`` and decisions skipped or late in the simulated clock."""
    from agent.core.engine import ExecutionEngine
    from agent.live.engine_step import EngineDriver
    from agent.live.intake import Inbound
    from agent.live.settings import ServiceSection
    from agent.live.state_topic import StateTracker
    from feeds.book import BookBatch

    names = [f"Z{i:03d}" for i in range(symbols)]
    t0 = 1_800_000_000 * NS
    now = [t0]
    engine = ExecutionEngine(clock=lambda: now[0])
    items = scale_parents(parents, names, t0 + NS, periods)
    for p in items:
        engine.submit(p)
    drv = EngineDriver(engine, ServiceSection(md_buffer_rows=buffer_rows))
    tracker = StateTracker(engine, "capacity")
    tracker.collect()
    rng, mids = np.random.default_rng(11), np.full(symbols, 5000, dtype=np.int64)
    tick, step_ns = int(NS / snapshots_per_s), int(step_ms * 1e6)
    pending: list[Any] = []
    decided: dict[str, int] = {}
    cpu, t, n, t_step = 0.0, t0, 0, t0
    t_end = max(p.end_ns for p in items) + NS
    while t < t_end:
        t += tick
        n += 1
        pending.append(synthetic_books(names, t, n, rng, mids))
        if t - t_step < step_ns:
            continue
        t_step, now[0] = t, t
        md, pending = BookBatch.concat(pending), []
        c0 = time.thread_time()
        res = drv.step(Inbound(md=md))
        tracker.collect()
        cpu += time.thread_time() - c0
        for c in res.children:
            decided.setdefault(c.child_order_id, t)
    by_id = {p.parent_id: p for p in items}
    expected = {f"{p.parent_id}:{k}" for p in items for k in range(periods)}
    lateness = [(t - by_id[cid.rsplit(":", 1)[0]].period_start_ns(int(cid.rsplit(":", 1)[1]))) / 1e6
                for cid, t in decided.items()]
    sim_s = (t_end - t0) / NS
    return {"sim_engine_cpu_share": cpu / sim_s, "sim_skipped": len(expected - set(decided)),
            "sim_late": int(np.sum(np.asarray(lateness) > 1000.0)),
            "sim_us_per_decision": 1e6 * cpu / max(len(decided), 1), **percentiles(lateness, "sim_lateness_ms")}


def synthetic_books(symbols: list[str], t_ns: int, step: int, rng: np.random.Generator,
                    mids: np.ndarray) -> Any:
    """One snapshot per symbol at ``t_ns``: 10 levels a cent apart around a random-walk mid."""
    from feeds.book import BookBatch

    n = len(symbols)
    mids += rng.integers(-1, 2, n)
    lv = np.arange(10)
    trade = (step % 10) == 0
    return BookBatch(
        ts_event=np.full(n, t_ns, dtype=np.int64), symbol=np.array(symbols, dtype=object),
        action=np.full(n, "T" if trade else "A"), side=np.full(n, "B" if trade else "A"),
        price=np.full(n, np.nan) if not trade else (mids + 1) / 100.0,
        size=np.full(n, 100.0), bid_px=(mids[:, None] - 1 - lv[None, :]) / 100.0,
        bid_sz=np.full((n, 10), 500.0), ask_px=(mids[:, None] + 1 + lv[None, :]) / 100.0,
        ask_sz=np.full((n, 10), 500.0))


async def publish(bootstrap_servers: str, topic: str, symbols: int, rate: float, until_ns: int,
                  cpu_from_ns: int = 0) -> None:
    """The market: every ``1 / rate`` s one snapshot per symbol, stamped with the wall clock. Prints
    ``{"cpu_s": ...}`` at the end: this process's CPU time from ``cpu_from_ns`` (the market's start)."""
    from feeds.file_feed import encode_rows
    from feeds.kafka import KafkaConnection, KafkaSink

    names = [f"Z{i:03d}" for i in range(symbols)]
    rng = np.random.default_rng(11)
    mids = np.full(symbols, 5000, dtype=np.int64)
    period = 1.0 / rate
    async with KafkaSink(KafkaConnection(bootstrap_servers=bootstrap_servers), linger_ms=0) as sink:
        step, t_next, cpu0 = 0, time.perf_counter(), None
        while time.time_ns() < until_ns:
            if cpu0 is None and time.time_ns() >= cpu_from_ns:
                cpu0 = time.process_time()
            books = synthetic_books(names, time.time_ns(), step, rng, mids)
            await sink.send_many(encode_rows(books, topic))
            step += 1
            t_next += period
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
    print(json.dumps({"cpu_s": time.process_time() - (cpu0 if cpu0 is not None else time.process_time())}),
          flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("publish")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--symbols", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--until", type=int, required=True)
    p.add_argument("--cpu-from", type=int, default=0, help="count CPU time from this wall-clock ns (the market's start)")
    args = ap.parse_args()
    asyncio.run(publish(args.bootstrap, args.topic, args.symbols, args.rate, args.until, args.cpu_from))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
