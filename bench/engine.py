"""Benchmark: engine time per snapshot row against the number of parent orders and symbols.

Usage: ``python bench/engine.py [--data FILE] [--hours 2] [--parents 1,10,100,1000]
[--json bench/out/engine.json]``

The first ``--hours`` of the real FROG day are fed through :class:`agent.core.driver.Driver`
(the loop replay and live share) in 2,000-row batches, as the live service does:

- *one symbol*: N parent orders on FROG (quantities and start times spread, 10-minute periods);
- *100 symbols*: the same rows copied under 100 symbol names, N parents spread over them.

Reported per case (engine-thread CPU time, ``time.thread_time``: on a shared machine wall time
mostly measures the other jobs): CPU time ``wall_s``, microseconds per row (all rows fed, all symbols), decisions taken
the time spent in the policies (the QP solves: one per decision, so it grows with parents by
nature), the per-row cost without it, and its ratio to the 1-parent case of the same layout,
measured in the same run. The per-row work is per symbol, shared by its parents: with the
reverting forecast (default) the symbol's sampler keeps one row per 10 s grid point and each
parent walks those when it decides (``walks_per_row`` 0: no per-row book walk at all); with
``forecast = "ewma"`` the symbol's cost curves walk every row once per side (2). What grows with
parents is the decisions (a forecast fit and a QP each, ~1 ms): with 10-minute periods on one
symbol a decision costs about as much as the per-row work of a whole period, so the per-row
ratio to one parent grows with parents however cheap the rows are.
Target (issue: one engine loop): 100 parents on one symbol cost at most 3x one parent per row.
The "walk" columns isolate the per-row part: rows x walks the market state did, which must not
depend on the number of parents.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.core.driver import Driver  # noqa: E402
from agent.core.engine import ExecutionEngine  # noqa: E402
from agent.core.model import NS_PER_S, ParentOrder, Plan  # noqa: E402
from agent.core.policy import DecisionInput, EngineSettings, Policy, mpc_policy  # noqa: E402
from bench._common import environment, print_table, write_json  # noqa: E402
from feeds.book import BookBatch  # noqa: E402
from feeds.files.readers import read_book  # noqa: E402

FROG = ROOT / ".." / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"
BATCH = 2000


def with_symbol(book: BookBatch, name: str) -> BookBatch:
    """``book``'s rows under the symbol ``name`` (copies of one day for many symbols)."""
    fields = {f: getattr(book, f) for f in ("ts_event", "ts_recv", "action", "side", "price", "size",
                                           "bid_px", "bid_sz", "ask_px", "ask_sz")}
    return BookBatch(symbol=np.full(len(book), name, dtype=object), **fields)


def _parents(n: int, symbols: list[str], t0: int, t1: int) -> list[ParentOrder]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        start = t0 + int(rng.integers(0, 6)) * 60 * NS_PER_S
        out.append(ParentOrder(f"P{i}", symbols[i % len(symbols)], "buy" if i % 2 else "sell",
                               float(rng.integers(2, 40) * 100), start, t1, period_s=600.0))
    return out


def run_case(books: dict[str, BookBatch], n_parents: int) -> dict[str, float]:
    syms = list(books)
    first = min(int(b.ts_event[0]) for b in books.values())
    last = max(int(b.ts_event[-1]) for b in books.values())
    spent = [0.0]

    def timed_policy(parent: ParentOrder, settings: EngineSettings) -> Policy:
        inner = mpc_policy(parent, settings)

        class Timed:
            name = inner.name

            def decide(self, d: DecisionInput) -> Plan:
                t0 = time.thread_time()
                try:
                    return inner.decide(d)
                finally:
                    spent[0] += time.thread_time() - t0

        return Timed()

    engine = ExecutionEngine(policy_factory=timed_policy)
    for p in _parents(n_parents, syms, first, last):
        engine.submit(p)
    driver = Driver(engine)
    rows = sum(len(b) for b in books.values())
    decisions = 0
    t = time.thread_time()  # CPU time of this (the engine's) thread: steadier than wall time on a shared machine
    n = len(next(iter(books.values())))
    for a in range(0, n, BATCH):
        for sym, book in books.items():
            decisions += len(driver.feed(book[a:a + BATCH], sym).decisions)
    wall = time.thread_time() - t
    walked = sum(c.snapshots + c.excluded for s in syms for c in engine.market(s).curves.values())
    return {"wall_s": wall, "us_per_row": 1e6 * wall / rows, "rows": rows, "decisions": decisions,
            "policy_s": spent[0], "us_per_row_ex_policy": 1e6 * (wall - spent[0]) / rows,
            "us_per_decision_ex_policy": 1e6 * (wall - spent[0]) / decisions if decisions else float("nan"),
            "walks_per_row": walked / rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(FROG))
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--parents", default="1,10,100,1000")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "engine.json"))
    args = ap.parse_args(argv)
    book = read_book([args.data]).batch
    ts = book.ts_event
    book = book[: int(np.searchsorted(ts, int(ts[0]) + int(args.hours * 3600 * NS_PER_S)))]
    layouts = {"1 symbol": {"FROG": book},
               "100 symbols": {f"S{i:03d}": with_symbol(book, f"S{i:03d}") for i in range(100)}}
    rows = []
    for layout, books in layouts.items():
        base = None
        for n in [int(x) for x in args.parents.split(",")]:
            r = run_case(books, n)
            base = base or r["us_per_row_ex_policy"]
            rows.append({"layout": layout, "parents": n, **r, "x_one_parent": r["us_per_row_ex_policy"] / base})
    print_table(rows, ["layout", "parents", "rows", "decisions", "wall_s", "policy_s", "us_per_row",
                       "us_per_row_ex_policy", "us_per_decision_ex_policy", "x_one_parent", "walks_per_row"])
    one = {r["parents"]: r for r in rows if r["layout"] == "1 symbol"}
    target = one.get(100, {}).get("x_one_parent")
    if target is not None:
        print(f"100 parents on one symbol: {target:.2f}x one parent per row (target <= 3x)")
    la = os.getloadavg()
    print(f"load average {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}")
    write_json(args.json, {"rows": rows, "environment": environment(), "target_100_parents_x": target,
                           "load_average": la})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
