"""Measurement: how spread and depth deviate from their intraday level, and how fast they revert.

Usage: ``python bench/liquidity_stats.py [--data PATH...] [--tz America/New_York] [--json FILE]``

For every symbol and trading day of the data (default: the real FROG day when
it is present, then the embedded sample), the model of
``replay.synthetic.liquidity`` is fitted to the time-weighted minute means of
the quoted spread (ticks) and the top-5 depth (bid + ask shares of the five
best levels) over the 09:30-16:00 session:

    log x_m = c0 + c1 exp(-tau/20) + c2 exp(-(390 - tau)/20) + d_m,   d_m = rho d_{m-1} + e_m

and the table gives, per series: the median minute mean, the level's open
and close coefficients ``c1, c2``, the per-minute persistence ``rho`` (lag-1
regression), ``acf(2)/acf(1)`` (an estimate of rho that white measurement
noise does not bias), the half-life in minutes, the stationary sd of ``d``
(log units) and the sd of the innovations; ``corr`` is the correlation of
the spread and depth deviations. One row per day and, with several days, a
pooled row ("all") whose rho is fitted on every day's pairs at once.

The generator's defaults (``replay.synthetic.params.LIQUIDITY``) are the
FROG numbers of this table; running it on the sample shows what the
generator's book mechanics make of them (the realised values, not the inputs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import environment, print_table, write_json  # noqa: E402
from replay.session import SAMPLE_FILES, TradingDays, read_days, wall_clock_ns  # noqa: E402
from replay.synthetic.liquidity import SeriesFit, measure_days  # noqa: E402

FROG = ROOT / ".." / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"
COLUMNS = ["data", "symbol", "day", "series", "median", "c_open", "c_close", "rho", "acf2/acf1",
           "half-life min", "sd", "innov sd", "corr"]


def _row(data: str, symbol: str, day: str, name: str, fit: SeriesFit, corr: float) -> dict[str, Any]:
    a = fit.ar1
    return {"data": data, "symbol": symbol, "day": day, "series": name, "median": round(fit.median, 2),
            "c_open": round(fit.level[1], 3), "c_close": round(fit.level[2], 3),
            "rho": round(a.rho, 3), "acf2/acf1": round(a.rho_from_acf, 3),
            "half-life min": round(a.half_life_min, 2), "sd": round(a.sd, 3),
            "innov sd": round(a.innovation_sd, 3), "corr": round(corr, 3), "pairs": a.pairs,
            "acf": [round(x, 3) for x in a.acf], "level": [round(x, 4) for x in fit.level]}


def measure(data: str, symbol: str, days: TradingDays) -> list[dict[str, Any]]:
    """Rows of one symbol: one per day, then the pooled row when there are several days."""
    opens = [wall_clock_ns(d, "09:30", days.tz) for d in days.dates]
    groups = [([b], [o], str(d)) for b, o, d in zip(days.books, opens, days.dates, strict=True)]
    if len(days.books) > 1:
        groups.append((days.books, opens, "all"))
    rows: list[dict[str, Any]] = []
    for books, op, label in groups:
        spread, depth, corr = measure_days(books, op)
        rows += [_row(data, symbol, label, "spread", spread, corr),
                 _row(data, symbol, label, "depth5", depth, corr)]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=None, metavar="PATH",
                    help="files to measure (default: FROG if present, then the embedded sample)")
    ap.add_argument("--tz", default="America/New_York")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "liquidity_stats.json"))
    args = ap.parse_args(argv)
    sets: list[tuple[str, list[Path]]]
    if args.data:
        sets = [(", ".join(Path(p).name for p in args.data), [Path(p) for p in args.data])]
    else:
        sets = ([("FROG (real)", [FROG])] if FROG.exists() else []) + [("sample", list(SAMPLE_FILES))]
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for name, paths in sets:
        data = read_days(paths, tz=args.tz)
        for sym, days in data.by_symbol.items():
            rows += measure(name, sym, days)
    print("Spread (ticks) and top-5 depth (shares) per minute: level c0 + c_open e^(-tau/20) + "
          "c_close e^(-(390-tau)/20) in logs, deviation AR(1) per minute")
    print_table([r for r in rows if r["day"] == "all" or not any(
        q["day"] == "all" and q["symbol"] == r["symbol"] and q["data"] == r["data"] for q in rows)]
        if len(rows) > 24 else rows, COLUMNS)
    write_json(Path(args.json), {"environment": environment(), "rows": rows,
                                 "seconds": round(time.perf_counter() - started, 2)})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
