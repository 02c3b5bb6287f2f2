"""Which engine choices make the MPC better or worse than TWAP: an ablation.

Model choices are selected on the synthetic sample (``data/sample``) and then
checked on the real FROG day, which is *not* used to choose anything.
Prints one table (mean implementation shortfall, bps, MPC minus TWAP, paired
over the same windows; negative = MPC cheaper) and writes JSON.

    python bench/mpc_ablation.py [--json bench/out/mpc_ablation.json] [--starts 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.core.engine import EngineSettings  # noqa: E402
from bench._common import environment, print_table, write_json  # noqa: E402
from feeds.files.readers import read_book  # noqa: E402
from replay.report import build_summary  # noqa: E402
from replay.runner import ReplaySpec, replay  # noqa: E402
from replay.session import SAMPLE, session_bounds  # noqa: E402

FROG = ROOT.parent / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"
BASE = EngineSettings()
VARIANTS: dict[str, EngineSettings] = {
    "initial (one 300 s estimate, no floor, no trust region)": dataclasses.replace(
        BASE, impact_half_life_s=300.0, impact_now_half_life_s=300.0, min_convexity=0.0,
        max_child_multiple=float("inf")),
    "+ convexity floor + trust region (default)": BASE,
    "+ fast now / slow later (30 s / 1800 s)": dataclasses.replace(
        BASE, impact_half_life_s=1800.0, impact_now_half_life_s=30.0),
    "fast now / slow later, no trust region": dataclasses.replace(
        BASE, impact_half_life_s=1800.0, impact_now_half_life_s=30.0, max_child_multiple=float("inf")),
}


def _datasets() -> list[tuple[str, Any]]:
    out = []
    sample = read_book([SAMPLE]).batch
    for sym in sample.symbols():
        out.append((f"sample {sym}", sample.for_symbol(sym)))
    if FROG.exists():
        frog = read_book([FROG]).batch
        out.append(("FROG (real, held out)", frog.for_symbol(frog.symbols()[0])))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "mpc_ablation.json"))
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--fraction", type=float, default=0.05)
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for name, book in _datasets():
        s0, s1 = session_bounds(book)
        qty = float(round(args.fraction * book.size[book.action == "T"].sum()))
        for variant, eng in VARIANTS.items():
            row: dict[str, Any] = {"data": name, "variant": variant}
            for side in ("buy", "sell"):
                for label, (a, b, k) in {"1h": (s0, s0 + 3600 * 10**9, args.starts),
                                         "day": (s0, s1, 1)}.items():
                    spec = ReplaySpec(book.symbols()[0], side, qty, a, b,  # type: ignore[arg-type]
                                      strategies=("mpc", "twap"), engine=eng)
                    s = build_summary(replay(book, spec, starts=k, session=(s0, s1)))
                    diff = [r["strategies"]["mpc"]["shortfall_bps"] - r["strategies"]["twap"]["shortfall_bps"]
                            for r in s["runs"]]
                    row[f"{side} {label}"] = round(float(np.mean(diff)), 2)
            rows.append(row)
            print(f"{name} | {variant} | {row}", file=sys.stderr)
    cols = ["data", "variant", "buy 1h", "sell 1h", "buy day", "sell day"]
    print(f"MPC - TWAP, mean shortfall bps over paired windows ({args.fraction:.0%} of day volume; "
          "negative = MPC cheaper)")
    print_table(rows, cols)
    write_json(Path(args.json), {"environment": environment(), "fraction": args.fraction,
                                 "starts": args.starts, "rows": rows,
                                 "seconds": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
