"""Benchmark: cost-curve throughput, vectorised ``agent.core.impact.estimator.cost_curves`` vs a per-row loop.

The baseline is what notebooks did: for each snapshot row (``iterrows``
style) and each order size, walk the levels in Python. Both run on the same
snapshots in the same process; the loop runs on a prefix (it is slow) and
both are reported as snapshot-curves per second (one curve = one snapshot
over the whole size grid). Targets: >= 200x the loop, >= 1,000,000 curves/s
with a 20-size grid.

Usage::

    .venv/bin/python bench/impact.py [--json bench/out/impact.json] [--rows 200000] [--loop-rows 2000]

Data: the real FROG day when ``../shared/data`` is beside the clone (tiled
to ``--rows``), else seeded synthetic books.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.core.impact.estimator import cost_curves  # noqa: E402
from bench._common import best_of, environment, print_table, write_json  # noqa: E402

FROG = ROOT / ".." / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"


def load_books(rows: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(source, bid_px, bid_sz, ask_px, ask_sz) with ``rows`` rows."""
    if FROG.exists():
        from feeds.files.readers import read_book

        b = read_book([FROG]).batch
        reps = math.ceil(rows / len(b))
        arrs = [np.tile(a, (reps, 1))[:rows] for a in (b.bid_px, b.bid_sz, b.ask_px, b.ask_sz)]
        return f"FROG 2025-04-03 ({len(b)} rows, tiled)", *arrs  # type: ignore[return-value]
    rng = np.random.default_rng(0)
    mid = 50 + np.cumsum(rng.normal(0, 0.01, rows))
    steps = 0.01 * np.cumsum(rng.integers(1, 4, (rows, 10)), axis=1)
    return ("synthetic", mid[:, None] - steps, rng.integers(1, 20, (rows, 10)) * 100.0,
            mid[:, None] + steps, rng.integers(1, 20, (rows, 10)) * 100.0)


def loop_cost_curves(bid_px: np.ndarray, bid_sz: np.ndarray, ask_px: np.ndarray, ask_sz: np.ndarray,
                     sizes: np.ndarray, penalty: float) -> np.ndarray:
    """The per-row baseline: Python loops over rows, sizes and levels (buy side)."""
    out = np.full((len(ask_px), len(sizes)), np.nan)
    for r in range(len(ask_px)):
        bp, ap, asz = bid_px[r], ask_px[r], ask_sz[r]
        if not (asz[0] > 0 and bid_sz[r][0] > 0):
            continue
        mid = 0.5 * (bp[0] + ap[0])
        for j, x in enumerate(sizes):
            left, cost, worst = x, 0.0, ap[0]
            for p, q in zip(ap, asz, strict=True):
                if q <= 0 or not math.isfinite(p):
                    continue
                take = min(left, q)
                cost += (p - mid) * take
                left -= take
                worst = p
                if left <= 0:
                    break
            if left > 0:
                cost += (worst + penalty - mid) * left
            out[r, j] = cost
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "impact.json"))
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--loop-rows", type=int, default=2_000)
    ap.add_argument("--grid", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    source, bid_px, bid_sz, ask_px, ask_sz = load_books(args.rows)

    depth = float(np.median(np.where(ask_sz > 0, ask_sz, 0.0).sum(axis=1)))
    sizes = np.linspace(1.5 * depth / args.grid, 1.5 * depth, args.grid)  # up to 1.5x the median depth
    penalty = 0.03

    t_vec, curves = best_of(lambda: cost_curves(bid_px, bid_sz, ask_px, ask_sz, sizes, side="buy",
                                                penalty_per_share=penalty), args.repeat)
    n_loop = min(args.loop_rows, args.rows)
    t_loop, ref = best_of(lambda: loop_cost_curves(bid_px[:n_loop], bid_sz[:n_loop], ask_px[:n_loop],
                                                   ask_sz[:n_loop], sizes, penalty), max(1, args.repeat // 2))
    max_diff = float(np.nanmax(np.abs(curves.cost[:n_loop] - ref)))
    vec_rate, loop_rate = args.rows / t_vec, n_loop / t_loop
    rows = [
        {"method": "per-row Python loop", "snapshots": n_loop, "grid": len(sizes), "seconds": t_loop,
         "curves_per_s": loop_rate, "points_per_s": loop_rate * len(sizes), "speedup": 1.0},
        {"method": "vectorised cost_curves", "snapshots": args.rows, "grid": len(sizes), "seconds": t_vec,
         "curves_per_s": vec_rate, "points_per_s": vec_rate * len(sizes), "speedup": vec_rate / loop_rate},
    ]
    print(f"data: {source}; extrapolated fraction {curves.extrapolated_fraction:.3f}; "
          f"max |vectorised - loop| = {max_diff:.2e} $")
    print_table(rows, ["method", "snapshots", "grid", "seconds", "curves_per_s", "points_per_s", "speedup"])
    targets = {"speedup_min": 200.0, "curves_per_s_min": 1_000_000.0}
    met = {"speedup": vec_rate / loop_rate >= targets["speedup_min"],
           "curves_per_s": vec_rate >= targets["curves_per_s_min"]}
    print(f"targets: speedup >= 200x: {'met' if met['speedup'] else 'MISSED'}; "
          f">= 1,000,000 curves/s: {'met' if met['curves_per_s'] else 'MISSED'}")
    path = write_json(args.json, {"benchmark": "impact.cost_curves", "data": source, "results": rows,
                                  "max_abs_diff_dollars": max_diff, "targets": targets, "met": met,
                                  "environment": environment()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
