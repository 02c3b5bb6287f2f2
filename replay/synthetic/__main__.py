"""``python -m replay.synthetic``: write one seeded synthetic trading day as Databento-layout CSV."""

from __future__ import annotations

import argparse
import time

import numpy as np

from replay.synthetic.csv_out import DEFAULT_ZSTD_LEVEL, write_csv_zst
from replay.synthetic.day import PROFILES, generate_day


def main(argv: list[str] | None = None) -> int:
    """``python -m replay.synthetic --seed S --symbols A,B --date D --out FILE.csv.zst``."""
    ap = argparse.ArgumentParser(
        prog="python -m replay.synthetic", description="Generate one seeded synthetic MBP-10 day as zstd CSV."
    )
    ap.add_argument("--seed", type=int, default=20250403)
    ap.add_argument(
        "--symbols", default="SYNA,SYNB", help="comma-separated; known: " + ",".join(PROFILES)
    )
    ap.add_argument("--date", default="2025-04-03", help="trading day (YYYY-MM-DD)")
    ap.add_argument("--tz", default="America/New_York", help="exchange time zone")
    ap.add_argument("--open", default="09:30", help="session open HH:MM in --tz")
    ap.add_argument("--close", default="16:00", help="session close HH:MM in --tz")
    ap.add_argument("--out", required=True, help="output .csv.zst path")
    ap.add_argument("--zstd-level", type=int, default=DEFAULT_ZSTD_LEVEL)
    a = ap.parse_args(argv)
    symbols = [s.strip() for s in a.symbols.split(",") if s.strip()]
    started = time.perf_counter()
    day = generate_day(a.seed, symbols, a.date, tz=a.tz, open_hm=a.open, close_hm=a.close)
    gen_s = time.perf_counter() - started
    nbytes = write_csv_zst(day, a.out, a.zstd_level)
    total_s = time.perf_counter() - started
    print(f"{'symbol':8} {'events':>8} {'trades':>7} {'volume':>10} {'med_spread':>10}")
    for s in dict.fromkeys(day.symbol.tolist()):
        m = day.symbol == s
        t = m & (day.action == "T")
        spread = (day.ask[m, 0, 0] - day.bid[m, 0, 0]) / 100.0
        print(
            f"{s:8} {int(m.sum()):8d} {int(t.sum()):7d} {int(day.size[t].sum()):10d} {np.median(spread):10.2f}"
        )
    print(
        f"wrote {a.out}: {len(day)} rows, {nbytes} bytes; generate {gen_s:.2f} s, total {total_s:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
