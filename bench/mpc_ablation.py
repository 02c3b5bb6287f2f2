"""Which forecast makes the MPC cheaper than TWAP: an ablation on controllable cost, paired by window.

Data
    * the embedded synthetic sample (``data/sample``: five days of SYNA and SYNB whose spread and
      depth deviations revert with the persistence measured on FROG); the last day is replayed and
      the intraday profile is learned from the earlier days only (no look-ahead);
    * the real FROG day (``../shared/data``), held out: nothing is chosen on it; one day, so no
      history and no profile (the ``+ profile`` variants are not run on it).
Variants (``EngineSettings``; everything else at its default)
    ``ewma``: every slot priced from the 300 s EW estimate (the previous default);
    ``reverting``: slot 0 from the decision snapshot's own book walk, later slots reverting to the
    level at the persistence estimated online, volume likewise (the new default);
    ``... + profile``: the same with the intraday profile of the history days;
    ``reverting L1800``: the reverting forecast with a 30-minute level half-life (the default is 300 s).
Cases
    buy and sell; 30- and 60-minute windows (``--starts`` per day, spread over the session);
    two sizes, each a share of the window's own market volume (``--sizes``, default 5% and 10%:
    participation-sized, so that the 20% cap leaves room in every window -- sized on the realised
    volume, identical for both strategies).
Metric
    controllable cost = spread + impact of the fills (``replay.tca`` components) plus the
    clean-up of any unfilled shares (walking the window's last book for them), bps of the arrival
    mid; paired MPC - TWAP per window: mean, seeded bootstrap 95% CI (``replay.tca.paired_comparison``),
    the mean as a share of TWAP's, wins; total implementation shortfall (unfilled priced at the end
    mid, as in the TCA) paired the same way beside it. Negative = MPC cheaper. Also the share of the
    order the MPC filled in the window's first third (TWAP: 1/3): how far it moved volume in time.

    python bench/mpc_ablation.py [--starts 10] [--data synthetic,frog] [--json bench/out/mpc_ablation.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.core.forecast.profile import IntradayProfile  # noqa: E402
from agent.core.forecast.reversion import ReversionSettings  # noqa: E402
from agent.core.impact.curves import cost_curves  # noqa: E402
from agent.core.policy import EngineSettings  # noqa: E402
from bench._common import environment, print_table, write_json  # noqa: E402
from feeds.book import BookBatch  # noqa: E402
from feeds.files.readers import read_book  # noqa: E402
from replay.runner import ReplaySpec, run_strategy, window_starts  # noqa: E402
from replay.session import SAMPLE_FILES, session_bounds  # noqa: E402
from replay.simulator import FillSimulator, SimulatorSettings  # noqa: E402
from replay.strategies import policy_factory  # noqa: E402
from replay.tca import Market, analyse, paired_comparison  # noqa: E402

FROG = ROOT.parent / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"
VARIANTS: dict[str, tuple[EngineSettings, bool]] = {  # name -> (settings, with profile)
    "ewma": (EngineSettings(forecast="ewma"), False),
    "ewma + profile": (EngineSettings(forecast="ewma"), True),
    "reverting": (EngineSettings(forecast="reverting"), False),
    "reverting + profile": (EngineSettings(forecast="reverting"), True),
    "reverting L1800": (EngineSettings(reversion=ReversionSettings(level_half_life_s=1800.0)), False),
}


@dataclasses.dataclass
class Dataset:
    """One symbol's replayed day, its market arrays for the TCA, and the profile of its history."""

    name: str
    book: BookBatch
    profile: IntradayProfile | None

    def __post_init__(self) -> None:
        self.market = Market.from_book(self.book)
        self.session = session_bounds(self.book)
        t = self.book.action == "T"
        self.trade_ts, self.trade_sz = self.book.ts_event[t], self.book.size[t]

    def window_volume(self, a: int, b: int) -> float:
        return float(self.trade_sz[(self.trade_ts >= a) & (self.trade_ts < b)].sum())


def synthetic(days: int) -> Iterator[Dataset]:
    """SYNA, SYNB of the embedded sample: the last day replayed, the profile from the ``days - 1`` before."""
    files = SAMPLE_FILES[-days:]
    batches = [read_book([f]).batch for f in files]
    for sym in batches[-1].symbols():
        history = [h for h in (b.for_symbol(sym) for b in batches[:-1]) if len(h)]
        profile = IntradayProfile.learn(history) if history else None
        yield Dataset(f"sample {sym} {files[-1].name[7:17]} (profile: {len(history)} days)",
                      batches[-1].for_symbol(sym), profile)


def frog() -> Iterator[Dataset]:
    if not FROG.exists():
        print(f"skipping FROG: {FROG} missing", file=sys.stderr)
        return
    b = read_book([FROG]).batch
    yield Dataset("FROG (real, held out, no history)", b.for_symbol(b.symbols()[0]), None)


def cleanup_dollars(ds: Dataset, side: str, shares: float, end_ns: int) -> float:
    """Spread + impact of trading ``shares`` at once on the last tradable book before ``end_ns``."""
    if shares <= 0:
        return 0.0
    i = int(np.searchsorted(ds.book.ts_event, end_ns, side="left")) - 1
    b = ds.book
    while i > 0 and not (b.bid_sz[i, 0] > 0 and b.ask_sz[i, 0] > 0 and b.bid_px[i, 0] < b.ask_px[i, 0]):
        i -= 1
    row = slice(i, i + 1)
    c = cost_curves(b.bid_px[row], b.bid_sz[row], b.ask_px[row], b.ask_sz[row], np.array([shares]),
                    side=side)  # type: ignore[arg-type]
    return float(c.cost[0, 0])


def run_window(ds: Dataset, side: str, qty: float, a: int, b: int, eng: EngineSettings,
               profile: IntradayProfile | None, sim: FillSimulator) -> dict[str, dict[str, float]]:
    """MPC and TWAP on one window: controllable and total cost (bps of arrival), fill rate."""
    spec = ReplaySpec(str(ds.book.symbol[0]), side, qty, a, b, strategies=("mpc", "twap"), engine=eng)  # type: ignore[arg-type]
    out: dict[str, dict[str, float]] = {}
    for name in spec.strategies:
        run = run_strategy(ds.book, spec.parent(a, b, name), policy_factory(name), sim, strategy=name,
                           settings=eng, profile=profile, feed_from_ns=ds.session[0])
        t = analyse(run, ds.market)
        scale = 1e4 / (qty * t["arrival_mid"])
        comp = t["components_dollars"]
        ctrl = comp["spread"] + comp["impact"] + cleanup_dollars(ds, side, t["unfilled_quantity"], b)
        q = np.array([f.quantity for f in run.fills])
        early = np.array([f.ts_event < a + (b - a) / 3 for f in run.fills], dtype=bool)
        out[name] = {"ctrl": ctrl * scale, "total": t["shortfall_bps"], "fill": t["fill_rate"],
                     "first_third": float(q[early].sum() / qty) if q.size else 0.0}
    return out


def case_row(ds: Dataset, variant: str, side: str, minutes: int, size: float, starts: int,
             sim: FillSimulator) -> dict[str, Any]:
    eng, with_profile = VARIANTS[variant]
    profile = ds.profile if with_profile else None
    length = minutes * 60 * 10**9
    res = []
    for a in window_starts(*ds.session, length, starts, 60 * 10**9):
        qty = float(round(size * ds.window_volume(a, a + length)))
        if qty > 0:
            res.append(run_window(ds, side, qty, a, a + length, eng, profile, sim))
    mpc = [r["mpc"]["ctrl"] for r in res]
    twap = [r["twap"]["ctrl"] for r in res]
    ctrl = paired_comparison(mpc, twap)
    total = paired_comparison([r["mpc"]["total"] for r in res], [r["twap"]["total"] for r in res])
    return {"data": ds.name, "variant": variant, "side": side, "window": f"{minutes}m", "size": f"{size:.0%}",
            "n": len(res), "mpc_ctrl_bps": float(np.mean(mpc)), "twap_ctrl_bps": float(np.mean(twap)),
            "ctrl_diff": ctrl, "ctrl_diff_pct": 100 * ctrl["mean_bps"] / float(np.mean(twap)),
            "total_diff": total,
            "fill_mpc": float(np.mean([r["mpc"]["fill"] for r in res])),
            "fill_twap": float(np.mean([r["twap"]["fill"] for r in res])),
            "first_third_mpc": float(np.mean([r["mpc"]["first_third"] for r in res]))}


def _ci(c: dict[str, Any]) -> str:
    lo, hi = c["ci95_bps"] or (float("nan"), float("nan"))
    return f"{c['mean_bps']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Printable rows; ``target`` = controllable >= 8% below TWAP with the CI below zero."""
    out = []
    for r in rows:
        hit = r["ctrl_diff_pct"] <= -8.0 and r["ctrl_diff"]["ci95_bps"][1] < 0
        worse = r["total_diff"]["ci95_bps"][0] > 0
        out.append({"data": r["data"], "variant": r["variant"], "case": f"{r['side']} {r['window']} {r['size']}",
                    "n": r["n"], "MPC ctrl": round(r["mpc_ctrl_bps"], 2), "TWAP ctrl": round(r["twap_ctrl_bps"], 2),
                    "MPC-TWAP ctrl [95% CI]": _ci(r["ctrl_diff"]), "%": round(r["ctrl_diff_pct"], 1),
                    "wins": f"{r['ctrl_diff']['a_better']}/{r['n']}",
                    "MPC-TWAP total [95% CI]": _ci(r["total_diff"]),
                    "fill MPC/TWAP": f"{r['fill_mpc']:.3f}/{r['fill_twap']:.3f}",
                    "MPC 1st third": round(r["first_third_mpc"], 2),
                    "target": "yes" if hit else "no", "total worse": "YES" if worse else ""})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="synthetic,frog")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--days", type=int, default=5, help="sample days used (the last is replayed)")
    ap.add_argument("--windows", default="30,60", help="window lengths, minutes")
    ap.add_argument("--sizes", default="0.05,0.10", help="order sizes, shares of the window's volume")
    ap.add_argument("--sides", default="buy,sell")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "mpc_ablation.json"))
    args = ap.parse_args(argv)
    sources = {"synthetic": lambda: synthetic(args.days), "frog": frog}
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for src in args.data.split(","):
        for ds in sources[src]():
            sim = FillSimulator(ds.book, SimulatorSettings())  # type: ignore[arg-type]
            for variant in args.variants.split(","):
                if VARIANTS[variant][1] and ds.profile is None:
                    continue
                for side in args.sides.split(","):
                    for minutes in (int(m) for m in args.windows.split(",")):
                        for size in (float(s) for s in args.sizes.split(",")):
                            rows.append(case_row(ds, variant, side, minutes, size, args.starts, sim))
                            print(f"[{time.perf_counter() - t0:6.0f} s] {table(rows[-1:])[0]}", file=sys.stderr)
    printable = table(rows)
    print("MPC - TWAP per window, bps of arrival (negative = MPC cheaper); ctrl = spread + impact "
          "(+ clean-up of unfilled shares)")
    print_table(printable, list(printable[0]) if printable else [])
    write_json(Path(args.json), {"environment": environment(), "args": vars(args), "rows": rows,
                                 "seconds": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
