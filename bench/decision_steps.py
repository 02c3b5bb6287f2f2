"""Benchmark: the engine CPU of the live service's decision steps, without a broker.

``bench/live.py``'s paced phases replayed through :class:`agent.live.engine_step.EngineDriver`
alone, in a simulated clock: 20 symbols carrying the same FROG rows (14:00 onwards), one
parent per symbol (``bench.live.parents``: 60-second periods from 14:05, starts staggered by
``--stagger-s``; 0 = all 20 decide in one batch), a step every ``--step-s`` of event time
(0.4 s: 20 ms of wall time at ``bench/live.py``'s 20x pace). Held rows are caught up off the
step, as the service's deferred catch-up does, and state records are collected after it.

Reported for the steps that sent a child order: the engine thread's CPU time per step
(``time.thread_time``, as ``bench/live.py``'s ``engine_cpu`` column) and per child order.
``bench/live.py`` measures the same steps on a real broker with everything else that runs
beside them; this isolates the engine, so an engine change can be compared in one sitting
without the broker's noise (``--profile`` prints where the steps' time goes).

Usage: ``.venv/bin/python bench/decision_steps.py [--minutes 20] [--stagger-s 3,0] [--json bench/out/decision_steps.json]``
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import environment, print_table, write_json  # noqa: E402
from bench.live import DATA, NS, SYMBOLS, day_window, parents  # noqa: E402


def market(minutes: float) -> Any:
    """Every symbol's copy of the FROG rows from 14:00 for ``minutes``, in time order."""
    from bench.engine import with_symbol
    from feeds.book import BookBatch

    part = day_window(minutes)
    allb = BookBatch.concat([with_symbol(part, s) for s in SYMBOLS])
    return allb[np.argsort(allb.ts_event, kind="stable")]


def run(md: Any, *, stagger_s: float, step_s: float, profile: cProfile.Profile | None = None) -> dict[str, Any]:
    """The steps of one phase; CPU time of those that sent a child."""
    from agent.core.engine import ExecutionEngine
    from agent.live.engine_step import EngineDriver
    from agent.live.intake import Inbound
    from agent.live.settings import ServiceSection
    from agent.live.state_topic import StateTracker

    engine = ExecutionEngine()
    for p in parents(stagger_s):
        engine.submit(p)
    queued: list[Any] = []
    drv = EngineDriver(engine, ServiceSection(market_state_interval_s=10.0), defer=queued.append)
    tracker = StateTracker(engine, "bench")
    tracker.collect()
    step_ns = int(step_s * NS)
    ts = md.ts_event
    edges = np.searchsorted(ts, np.arange(int(ts[0]), int(ts[-1]) + step_ns, step_ns))
    cpu: list[float] = []
    children = 0
    for a, b in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        if b <= a:
            continue
        if profile is not None:
            profile.enable()
        res = drv.step(Inbound(md=md[a:b]))
        if profile is not None:
            profile.disable()
        if res.children:
            cpu.append(res.cpu_s * 1e3)
            children += len(res.children)
        tracker.collect()
        while queued:  # the deferred catch-up: on the engine thread, after the step
            queued.pop(0)()
    c = np.asarray(cpu)
    return {"stagger_s": stagger_s, "decision_steps": len(cpu), "child_orders": children,
            "cpu_ms_p50": float(np.percentile(c, 50)) if c.size else float("nan"),
            "cpu_ms_p99": float(np.percentile(c, 99)) if c.size else float("nan"),
            "cpu_ms_per_child": float(c.sum() / children) if children else float("nan")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="minutes of the FROG day from 14:00")
    ap.add_argument("--stagger-s", default="3,0", help="phases: parent i starts i * stagger_s after 14:05")
    ap.add_argument("--step-s", type=float, default=0.4, help="event time per step")
    ap.add_argument("--profile", action="store_true", help="print where the steps' time goes (cProfile)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "decision_steps.json"))
    args = ap.parse_args(argv)
    if not DATA.exists():
        print(f"needs the FROG day at {DATA}", file=sys.stderr)
        return 2
    md = market(args.minutes)
    rows = []
    for s in (float(x) for x in args.stagger_s.split(",")):
        prof = cProfile.Profile() if args.profile else None
        t = time.perf_counter()
        rows.append({**run(md, stagger_s=s, step_s=args.step_s, profile=prof), "wall_s": time.perf_counter() - t})
        if prof is not None:
            print(f"\nstagger {s:g} s: the steps, by cumulative time")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    print_table(rows, ["stagger_s", "decision_steps", "child_orders", "cpu_ms_p50", "cpu_ms_p99", "cpu_ms_per_child",
                       "wall_s"])
    la = os.getloadavg()
    print(f"load average {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}")
    write_json(args.json, {"rows": rows, "rows_fed": len(md), "step_s": args.step_s,
                           "environment": environment(), "load_average": la})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
