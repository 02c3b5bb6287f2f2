"""Benchmark the order-book file readers on the real FROG day.

Measures events/s for, in the same run:

- ``pandas.read_csv`` of the FROG CSV (the baseline: parse only, C engine);
- our CSV reader, raw rows (``open_batches``) and validated (``read_book``);
- our Parquet reader after converting FROG into a temporary directory, raw and validated.

Targets (issue 2): Parquet >= 1,000,000 events/s; CSV time <= 1.5 x pandas.
Prints a table and writes JSON (default ``bench/out/feeds.json``)::

    python -m bench.feeds [--json FILE] [--repeat 7] [--data PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._common import best_of, environment, print_table, write_json  # noqa: E402

DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"
PARQUET_TARGET_EPS = 1_000_000.0
CSV_MAX_RATIO_TO_PANDAS = 1.5


def _count_raw(path: Path, fmt: str) -> int:
    from feeds.files.readers import open_batches

    return sum(len(b) for b in open_batches(path, fmt))


def _count_clean(path: Path, fmt: str) -> int:
    from feeds.files.readers import read_book

    return len(read_book(path, fmt).batch)


def run(data: Path, repeat: int) -> dict[str, Any]:
    """Time every case ``repeat`` times, round-robin (so load drift on a shared machine
    hits every case alike), keep the best time of each."""
    import pandas as pd

    from feeds.files.convert import convert_to_parquet

    with tempfile.TemporaryDirectory() as tmp:
        pq_path = Path(tmp) / "frog.parquet"
        conv = convert_to_parquet([str(data)], pq_path)
        cases: dict[str, Callable[[], int]] = {
            "pandas.read_csv (baseline)": lambda: len(pd.read_csv(data)),
            "csv: open_batches (raw)": lambda: _count_raw(data, "mbp10-csv"),
            "csv: read_book (validated)": lambda: _count_clean(data, "mbp10-csv"),
            "parquet: open_batches (raw)": lambda: _count_raw(pq_path, "parquet"),
            "parquet: read_book (validated)": lambda: _count_clean(pq_path, "parquet"),
        }
        events = {name: fn() for name, fn in cases.items()}  # warm-up (imports, page cache)
        best = dict.fromkeys(cases, float("inf"))
        for _ in range(max(1, repeat)):
            for name, fn in cases.items():
                seconds, _n = best_of(fn, 1)
                best[name] = min(best[name], seconds)
        pq_bytes = pq_path.stat().st_size
    t_pandas = best["pandas.read_csv (baseline)"]
    rows = [
        {"case": name, "events": events[name], "seconds": best[name],
         "events_per_s": events[name] / best[name], "ratio_to_pandas": best[name] / t_pandas}
        for name in cases
    ]
    t = {r["case"]: r for r in rows}
    pq_eps = t["parquet: open_batches (raw)"]["events_per_s"]
    csv_ratio = t["csv: open_batches (raw)"]["ratio_to_pandas"]
    return {
        "benchmark": "feeds",
        "data": str(data),
        "data_bytes": data.stat().st_size,
        "parquet_bytes": pq_bytes,
        "convert_seconds": conv["seconds"],
        "repeat": repeat,
        "rows": rows,
        "ratios": {
            "csv_raw_vs_pandas": csv_ratio,
            "csv_validated_vs_pandas": t["csv: read_book (validated)"]["ratio_to_pandas"],
            "parquet_raw_vs_pandas": t["parquet: open_batches (raw)"]["ratio_to_pandas"],
            "parquet_validated_vs_pandas": t["parquet: read_book (validated)"]["ratio_to_pandas"],
        },
        "targets": {
            "parquet_events_per_s_min": PARQUET_TARGET_EPS,
            "parquet_raw_events_per_s": pq_eps,
            "parquet_met": pq_eps >= PARQUET_TARGET_EPS,
            "csv_ratio_to_pandas_max": CSV_MAX_RATIO_TO_PANDAS,
            "csv_met": csv_ratio <= CSV_MAX_RATIO_TO_PANDAS,
        },
        "environment": {**environment(), "loadavg_1m": _loadavg()},
    }


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "feeds.json"), help="output JSON file")
    ap.add_argument("--repeat", type=int, default=7, help="timed rounds (best per case is kept)")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="Databento MBP-10 CSV to read")
    args = ap.parse_args(argv)
    data = Path(args.data).resolve()
    if not data.exists():
        print(f"bench.feeds: {data} not found (expected ../shared/data beside the repository)", file=sys.stderr)
        return 2
    result = run(data, args.repeat)
    print_table(result["rows"], ["case", "events", "seconds", "events_per_s", "ratio_to_pandas"])
    t = result["targets"]
    print(f"\nparquet raw: {t['parquet_raw_events_per_s']:,.0f} events/s (target >= {PARQUET_TARGET_EPS:,.0f}): "
          f"{'met' if t['parquet_met'] else 'MISSED'}")
    print(f"csv raw / pandas: {result['ratios']['csv_raw_vs_pandas']:.3f} (target <= {CSV_MAX_RATIO_TO_PANDAS}): "
          f"{'met' if t['csv_met'] else 'MISSED'}")
    out = write_json(args.json, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
