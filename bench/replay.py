"""Benchmark: full-session historical replay and fill-simulator throughput.

Usage: ``python bench/replay.py [--data FILE] [--repeat 3] [--json bench/out/replay.json]``

Measures, on the real FROG day (390 one-minute periods) unless ``--data`` is given:

- wall time of a full-session replay of a buy parent order (2% of the day's
  traded volume) with all six strategies (target < 5 s), and per strategy;
- simulator throughput: the child orders those runs produced, re-executed on a
  fresh :class:`replay.simulator.FillSimulator`; events/s = snapshots the runs
  span (the day's rows, once per strategy) / time spent in ``execute``
  (target >= 500,000 events/s);
- the simulator's share of the replay wall time (same run), so it is
  visible where the time goes (the engine's estimators and the QP).

Reading the file is timed separately and not part of the replay time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import best_of, environment, print_table, write_json  # noqa: E402
from feeds.files.readers import read_book  # noqa: E402
from replay.runner import ReplaySpec, replay  # noqa: E402
from replay.session import session_bounds  # noqa: E402
from replay.simulator import FillSimulator  # noqa: E402
from replay.strategies import STRATEGIES  # noqa: E402

FROG = ROOT / ".." / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(FROG))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "replay.json"))
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    book = read_book([args.data]).batch
    sym = book.symbols()[0]
    book = book.for_symbol(sym)
    read_s = time.perf_counter() - t0
    s0, s1 = session_bounds(book)
    trades = book.action == "T"
    qty = round(0.02 * float(book.size[trades].sum()))
    spec = ReplaySpec(sym, "buy", float(qty), s0, s1)
    n_periods = spec.parent(s0, s1, "x").n_periods

    wall, res = best_of(lambda: replay(book, spec), args.repeat)
    per: dict[str, float] = {}
    for name in STRATEGIES:
        one = ReplaySpec(sym, "buy", float(qty), s0, s1, strategies=(name,))
        per[name], _ = best_of(lambda one=one: replay(book, one), args.repeat)

    # simulator alone: the same children on a fresh simulator, timing execute() only
    sim = FillSimulator(book)
    children = [(n, c) for n, r in res.windows[0].runs.items() for c in r.children]
    best_sim = float("inf")
    for _ in range(max(1, args.repeat)):
        spent = 0.0
        for name in STRATEGIES:
            sim.reset()
            batch = [c for n, c in children if n == name]
            t = time.perf_counter()
            for c in batch:
                sim.execute(c, c.ts_event)
            spent += time.perf_counter() - t
        best_sim = min(best_sim, spent)
    events = len(book) * len(STRATEGIES)
    sim_eps = events / best_sim

    rows = [
        {"measure": "read file (not in replay)", "value": read_s, "unit": "s"},
        {"measure": f"replay, 6 strategies, {n_periods} periods", "value": wall, "unit": "s", "target": "< 5 s"},
        *({"measure": f"  {n} alone", "value": per[n], "unit": "s"} for n in STRATEGIES),
        {"measure": "replay events/s (rows x strategies / wall)", "value": events / wall, "unit": "events/s"},
        {"measure": "simulator execute() time, all children", "value": best_sim, "unit": "s"},
        {"measure": "simulator throughput", "value": sim_eps, "unit": "events/s", "target": ">= 500,000"},
        {"measure": "simulator share of replay wall", "value": best_sim / wall, "unit": "ratio"},
        {"measure": "child orders executed", "value": len(children), "unit": "orders"},
    ]
    print(f"{sym}: {len(book):,} events, parent {qty:,} shares (2% of day volume), best of {args.repeat}")
    print_table(rows, ["measure", "value", "unit", "target"])
    out = write_json(args.json, {
        "environment": environment(), "symbol": sym, "events": len(book), "periods": n_periods,
        "quantity": qty, "repeat": args.repeat, "read_s": read_s, "replay_wall_s": wall,
        "per_strategy_s": per, "replay_events_per_s": events / wall, "simulator_s": best_sim,
        "simulator_events_per_s": sim_eps, "children": len(children),
        "ratios": {"simulator_share_of_replay": best_sim / wall, "wall_vs_target_5s": wall / 5.0,
                   "simulator_eps_vs_target": sim_eps / 500_000},
        "targets_met": {"replay_under_5s": bool(wall < 5.0), "simulator_500k_eps": bool(sim_eps >= 5e5)},
        "filled": {n: float(np.sum([f.quantity for f in r.fills])) for n, r in res.windows[0].runs.items()},
    })
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
