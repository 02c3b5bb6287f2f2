"""Out-of-sample skill of the per-slot cost forecasts, k periods ahead (the evidence for the level).

At every decision time ``t`` (one per minute, after a 30-minute warm-up) each predictor forecasts the
cost the child order of slot ``k`` will meet: the cost curve of the first tradable snapshot at or
after ``t + k P`` at two sizes (the even slice and the trust region, 4x, of a 30-minute order of 5%
of the day's volume). Predictors, all fed only with rows up to ``t``:

* ``now``: the decision snapshot's own curve, carried flat (a random walk);
* ``ewma300``: the 300 s event-weighted estimate x profile (the ``ewma`` forecast);
* ``reverting L<h>``: the ``reverting`` forecast with level half-life ``h`` seconds;
* ``level L<h>``: its level x profile alone (persistence zero).

Errors are predicted - realised cost per share in bps of the mid: mean absolute error and bias
(a biased level moves volume in time for no saving: a level above the usual cost front-loads).

    python bench/forecast_skill.py [--data FILE] [--history FILE,...] [--symbol S] [--side buy]
        [--level-half-lives 300,1800] [--json bench/out/forecast_skill.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.core.forecast.cost_forecast import ParentForecaster  # noqa: E402
from agent.core.forecast.profile import IntradayProfile  # noqa: E402
from agent.core.forecast.reversion import ReversionSettings  # noqa: E402
from agent.core.forecast.sampler import BookSampler  # noqa: E402
from agent.core.impact.curves import cost_curves, default_sizes  # noqa: E402
from agent.core.impact.estimator import OnlineImpactEstimator  # noqa: E402
from bench._common import environment, print_table, write_json  # noqa: E402
from feeds.book import BookBatch  # noqa: E402
from feeds.files.readers import read_book  # noqa: E402

FROG = ROOT.parent / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"
P = 60 * 10**9
HORIZONS = (1, 2, 5)


def load(path: str, symbol: str | None) -> BookBatch:
    b = read_book([path]).batch
    return b.for_symbol(symbol or b.symbols()[0])


def decision_rows(b: BookBatch) -> np.ndarray:
    """First tradable row at or after each minute, from 30 minutes in to 6 minutes before the end."""
    ts = b.ts_event
    ok = np.flatnonzero((b.bid_sz[:, 0] > 0) & (b.ask_sz[:, 0] > 0) & (b.bid_px[:, 0] < b.ask_px[:, 0]))
    t0 = -(-int(ts[0]) // P) * P
    times = np.arange(t0 + 30 * P, int(ts[-1]) - 6 * P, P)
    return np.asarray(ok[np.searchsorted(ts[ok], times)])


def predictions(b: BookBatch, side: str, profile: IntradayProfile | None, half_lives: list[float],
                rows: np.ndarray, ev: np.ndarray) -> dict[str, np.ndarray]:
    """name -> (horizon, decision, size) predicted cost (dollars); NaN where not defined."""
    sizes = default_sizes(ev[0] * 30, 30)
    names = ["now", "ewma300"] + [f"{n} L{h:g}" for n in ("reverting", "level") for h in half_lives]
    out = {n: np.full((len(HORIZONS), rows.size, ev.size), np.nan) for n in names}
    fc = {h: (BookSampler(ReversionSettings(level_half_life_s=h), profile=profile),
              ParentForecaster(side, sizes, ReversionSettings(level_half_life_s=h), profile=profile))  # type: ignore[arg-type]
          for h in half_lives}
    ew = OnlineImpactEstimator(side, sizes, half_life_s=300.0)  # type: ignore[arg-type]
    quad = lambda beta, gamma: beta * ev + gamma * ev * ev  # noqa: E731
    pos = 0
    for j, r in enumerate(rows.tolist()):
        chunk, pos = b[pos:r + 1], r + 1
        ew.update(chunk)
        ts = int(b.ts_event[r])
        eb, eg = ew.forecast(max(HORIZONS) + 1, ts_ns=ts, period_s=60.0, profile=profile)
        for h, (smp, pf) in fc.items():
            smp.update(chunk)
            now = pf.now(smp, b, r)
            f = pf.forecast(now, smp, max(HORIZONS) + 1, ts_ns=ts, period_s=60.0)
            t = ts + np.arange(max(HORIZONS) + 1, dtype=np.int64) * P
            fb = profile.factor("beta", t) if profile else np.ones(t.size)
            fg = profile.factor("gamma", t) if profile else np.ones(t.size)
            for i, k in enumerate(HORIZONS):
                if j + k < rows.size:
                    out["now"][i, j + k] = quad(now.beta, now.gamma)
                    out["ewma300"][i, j + k] = quad(eb[k], eg[k])
                    out[f"reverting L{h:g}"][i, j + k] = quad(f.beta[k], f.gamma[k])
                    out[f"level L{h:g}"][i, j + k] = quad(pf.est["beta"].level * fb[k],
                                                          pf.est["gamma"].level * fg[k])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(FROG))
    ap.add_argument("--history", default="", help="earlier days (comma-separated) for the profile")
    ap.add_argument("--symbol", default=None)
    ap.add_argument("--side", default="buy", choices=("buy", "sell"))
    ap.add_argument("--level-half-lives", default="300,1800")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "forecast_skill.json"))
    args = ap.parse_args(argv)
    b = load(args.data, args.symbol)
    profile = IntradayProfile.learn([load(h, args.symbol) for h in args.history.split(",")]) if args.history else None
    ev = np.array([1.0, 4.0]) * 0.05 * float(b.size[b.action == "T"].sum()) / 390
    rows = decision_rows(b)
    real = cost_curves(b.bid_px[rows], b.bid_sz[rows], b.ask_px[rows], b.ask_sz[rows], ev, side=args.side)  # type: ignore[arg-type]
    preds = predictions(b, args.side, profile, [float(h) for h in args.level_half_lives.split(",")], rows, ev)
    table: list[dict[str, Any]] = []
    for si, x in enumerate(ev):
        for i, k in enumerate(HORIZONS):
            row: dict[str, Any] = {"size": round(float(x)), "k": k}
            for name, p in preds.items():
                ok = np.isfinite(p[i, :, si])
                err = 1e4 * (p[i, ok, si] - real.cost[ok, si]) / (x * real.mid[ok])
                row[name] = f"{np.mean(np.abs(err)):.2f} / {np.mean(err):+.2f}"
            table.append(row)
    days = f"{len(args.history.split(','))} days" if profile else "none"
    print(f"{args.data} {b.symbols()[0]} {args.side}, profile: {days}; MAE / bias, bps of mid (predicted - realised)")
    print_table(table, list(table[0]))
    write_json(args.json, {"environment": environment(), "args": vars(args), "rows": table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
