"""``python -m replay.synthetic``: write generated days, one zstd CSV file per day.

With no arguments but ``--out-dir`` it regenerates the embedded sample
(``SAMPLE_SEED``, ``SAMPLE_SYMBOLS``, ``SAMPLE_DATES``: five consecutive
trading days, the last one replayed and the others its history)::

    python -m replay.synthetic --out-dir data/sample

Files are named ``{prefix}-{YYYY-MM-DD}.mbp10.csv.zst``; a day's bytes depend
only on the seed, the symbols, the date and the library versions (see
``data/sample/README.md``).
"""

from __future__ import annotations

import argparse
import time
from datetime import date as Date
from pathlib import Path

import numpy as np

from replay.synthetic.csv_out import SAMPLE_ZSTD_LEVEL, write_csv_zst
from replay.synthetic.day import SyntheticDay, generate_day
from replay.synthetic.params import PARAMS

SAMPLE_SEED = 20250403
SAMPLE_SYMBOLS = ("SYNA", "SYNB")
SAMPLE_DATES = ("2025-03-28", "2025-03-31", "2025-04-01", "2025-04-02", "2025-04-03")
SAMPLE_PREFIX = "sample"


def day_file(out_dir: str | Path, day: str | Date, prefix: str = SAMPLE_PREFIX) -> Path:
    """``out_dir / {prefix}-{YYYY-MM-DD}.mbp10.csv.zst``."""
    return Path(out_dir) / f"{prefix}-{Date.fromisoformat(str(day)).isoformat()}.mbp10.csv.zst"


def summary_rows(day: SyntheticDay, label: str) -> list[str]:
    """One text line per symbol: rows, trades, traded volume, median spread and 10-level ask depth."""
    out = []
    for s in dict.fromkeys(day.symbol.tolist()):
        m = day.symbol == s
        t = m & (day.action == "T")
        spread = (day.ask[m, 0, 0] - day.bid[m, 0, 0]).astype(np.float64)
        depth = day.ask[m, 1].sum(axis=1)
        out.append(f"{label:10} {s:6} {int(m.sum()):8d} {int(t.sum()):7d} {int(day.size[t].sum()):10d} "
                   f"{np.median(spread):7.0f} {np.median(depth):9.0f}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, generate every day, write one file per day, print a summary."""
    ap = argparse.ArgumentParser(prog="python -m replay.synthetic", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=SAMPLE_SEED)
    ap.add_argument("--symbols", default=",".join(SAMPLE_SYMBOLS),
                    help="comma-separated; known: " + ",".join(PARAMS))
    ap.add_argument("--dates", default=",".join(SAMPLE_DATES), help="trading days, YYYY-MM-DD,...")
    ap.add_argument("--tz", default="America/New_York", help="exchange time zone")
    ap.add_argument("--open", default="09:30", help="session open HH:MM in --tz")
    ap.add_argument("--close", default="16:00", help="session close HH:MM in --tz")
    ap.add_argument("--out-dir", required=True, help="directory of the output files")
    ap.add_argument("--prefix", default=SAMPLE_PREFIX, help="file name prefix")
    ap.add_argument("--zstd-level", type=int, default=SAMPLE_ZSTD_LEVEL)
    a = ap.parse_args(argv)
    symbols = [s.strip() for s in a.symbols.split(",") if s.strip()]
    dates = [Date.fromisoformat(d.strip()) for d in a.dates.split(",") if d.strip()]
    if not symbols or not dates:
        ap.error("need at least one symbol and one date")
    print(f"{'day':10} {'symbol':6} {'rows':>8} {'trades':>7} {'volume':>10} {'spread':>7} {'ask depth':>9}")
    total = 0
    for d in dates:
        started = time.perf_counter()
        day = generate_day(a.seed, symbols, d, tz=a.tz, open_hm=a.open, close_hm=a.close)
        path = day_file(a.out_dir, d, a.prefix)
        path.parent.mkdir(parents=True, exist_ok=True)
        nbytes = write_csv_zst(day, path, a.zstd_level)
        total += nbytes
        print("\n".join(summary_rows(day, d.isoformat())))
        print(f"  -> {path}: {len(day)} rows, {nbytes:,} bytes, {time.perf_counter() - started:.1f} s")
    print(f"{len(dates)} file(s), {total:,} bytes")
    return 0
