"""Evidence: out-of-sample skill of the online impact estimate on a real day.

For every period k of the day (default 60 s) the estimate available at the
period's start (built from snapshots strictly before it) predicts the
period's realised average cost curve (equal weight per snapshot, the same
cost model as the planner and the fill simulator). Predictors:

* ``online-q hl=H``: ``OnlineImpactEstimator`` quadratic ``beta x + gamma x^2``
  with half-life H seconds (what the planner uses);
* ``online-curve hl=H``: the estimator's EW-average curve itself (no fit),
  linearly interpolated on the grid -- separates fit error from tracking error;
* ``last snapshot``: the exact cost curve of the last snapshot before the period;
* ``day average``: the average curve over the *whole* day (look-ahead, an
  in-sample oracle of the level; not available live).

Errors are |predicted - realised| cost per share in bps of the period's mid,
at two order sizes. Also: median R^2 of the quadratic vs the power-law fit
per period, and a plot of beta vs half-spread and gamma vs depth.

Usage::

    .venv/bin/python bench/impact_skill.py [--data FILE] [--side buy] [--period-s 60]
        [--sizes 100,1000] [--json bench/out/impact_skill.json] [--png bench/out/impact_frog.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.core.impact.estimator import OnlineImpactEstimator, cost_curves, curves_from_book  # noqa: E402
from agent.core.model import NS_PER_S  # noqa: E402
from bench._common import environment, print_table, write_json  # noqa: E402
from feeds.files.readers import read_book  # noqa: E402
from replay.fit import fit_periods  # noqa: E402

FROG = ROOT / ".." / "shared" / "data" / "FROG_2025-04-03.mbp10.csv.gz"


def predictions(book: Any, side: str, period_ns: int, grid: np.ndarray, eval_sizes: np.ndarray,
                half_lives: list[float]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Per-period predictions (name -> (periods, sizes)), realised curve, mid and period mask."""
    ts = book.ts_event
    origin = int(ts[0]) // period_ns * period_ns
    pidx = (ts - origin) // period_ns
    n_p = int(pidx[-1]) + 1
    exact = cost_curves(book.bid_px, book.bid_sz, book.ask_px, book.ask_sz, eval_sizes, side=side)
    v = exact.valid
    counts = np.bincount(pidx[v], minlength=n_p).astype(float)
    realised = np.stack([np.bincount(pidx[v], weights=exact.cost[v, j], minlength=n_p)
                         for j in range(eval_sizes.size)], axis=1)
    mid = np.bincount(pidx[v], weights=exact.mid[v], minlength=n_p)
    with np.errstate(invalid="ignore", divide="ignore"):
        realised /= counts[:, None]
        mid /= counts
    bounds = np.searchsorted(ts, origin + np.arange(n_p + 1) * period_ns)
    preds: dict[str, np.ndarray] = {}
    ests = {h: OnlineImpactEstimator(side, grid, half_life_s=h) for h in half_lives}  # type: ignore[arg-type]
    for h in half_lives:
        preds[f"online-q hl={h:g}s"] = np.full((n_p, eval_sizes.size), np.nan)
        preds[f"online-curve hl={h:g}s"] = np.full((n_p, eval_sizes.size), np.nan)
    last = np.full((n_p, eval_sizes.size), np.nan)
    valid_idx = np.flatnonzero(v)
    for k in range(1, n_p):
        chunk = book.take(slice(int(bounds[k - 1]), int(bounds[k])))
        for h, est in ests.items():
            est.update(chunk)
            if est.ready:
                p = est.current()
                preds[f"online-q hl={h:g}s"][k] = p.beta * eval_sizes + p.gamma * eval_sizes ** 2
                preds[f"online-curve hl={h:g}s"][k] = np.interp(eval_sizes, np.r_[0.0, grid],
                                                                np.r_[0.0, est.average_curve()])
        j = np.searchsorted(valid_idx, bounds[k]) - 1  # last usable snapshot before the period
        if j >= 0:
            last[k] = exact.cost[valid_idx[j]]
    preds["last snapshot"] = last
    preds["day average"] = np.broadcast_to(np.nanmean(exact.cost[v], axis=0), last.shape).copy()
    has = counts > 0
    has[0] = False  # nothing is known before the first period
    return preds, realised, mid, has


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(FROG))
    ap.add_argument("--side", default="buy", choices=("buy", "sell"))
    ap.add_argument("--period-s", type=float, default=60.0)
    ap.add_argument("--sizes", default="100,1000", help="order sizes at which to score, shares")
    ap.add_argument("--grid-max", type=float, default=1500.0, help="fitting grid: 20 sizes up to this")
    ap.add_argument("--half-lives", default="60,300,1800")
    ap.add_argument("--json", default=str(ROOT / "bench" / "out" / "impact_skill.json"))
    ap.add_argument("--png", default=str(ROOT / "bench" / "out" / "impact_frog.png"))
    args = ap.parse_args(argv)

    res = read_book([args.data])
    book = res.batch.for_symbol(res.batch.symbols()[0])
    eval_sizes = np.array([float(s) for s in args.sizes.split(",")])
    grid = np.linspace(args.grid_max / 20, args.grid_max, 20)
    half_lives = [float(h) for h in args.half_lives.split(",")]
    period_ns = round(args.period_s * NS_PER_S)
    preds, realised, mid, has = predictions(book, args.side, period_ns, grid, eval_sizes, half_lives)

    rows: list[dict[str, Any]] = []
    for name, p in preds.items():
        for j, x in enumerate(eval_sizes):
            ok = has & np.isfinite(p[:, j]) & np.isfinite(realised[:, j])
            err = 1e4 * (p[ok, j] - realised[ok, j]) / (x * mid[ok])
            rows.append({"predictor": name, "size": int(x), "periods": int(ok.sum()),
                         "mae_bps": float(np.mean(np.abs(err))), "median_ae_bps": float(np.median(np.abs(err))),
                         "bias_bps": float(np.mean(err)), "rmse_bps": float(np.sqrt(np.mean(err ** 2)))})
    ext = curves_from_book(book, eval_sizes, side=args.side)  # type: ignore[arg-type]
    print(f"data: {args.data} ({len(book)} snapshots), side {args.side}, period {args.period_s:g}s, "
          f"grid {grid[0]:g}..{grid[-1]:g} shares; realised cost of {eval_sizes.astype(int).tolist()} shares "
          f"beyond visible depth in {100 * ext.extrapolated[ext.valid].mean(axis=0)} % of snapshots")
    print_table(rows, ["predictor", "size", "periods", "mae_bps", "median_ae_bps", "bias_bps", "rmse_bps"])

    fit = fit_periods(book, side=args.side, period_s=args.period_s, sizes=grid)
    r2q = np.array([p["r2_quadratic"] for p in fit["periods"] if p["r2_quadratic"] is not None])
    r2p = np.array([p["r2_power"] for p in fit["periods"] if p["r2_power"] is not None])
    better = float(np.mean(r2q >= r2p)) if r2q.size == r2p.size else float("nan")
    quality = {"median_r2_quadratic": float(np.median(r2q)), "median_r2_power": float(np.median(r2p)),
               "p10_r2_quadratic": float(np.percentile(r2q, 10)), "p10_r2_power": float(np.percentile(r2p, 10)),
               "share_periods_quadratic_at_least_as_good": better, "periods": int(r2q.size)}
    print_table([quality], list(quality))

    best = {int(x): min((r for r in rows if r["size"] == int(x)), key=lambda r: r["mae_bps"])["predictor"]
            for x in eval_sizes}
    print(f"lowest MAE per size: {best}")
    plot(book, fit, args.side, args.png)
    path = write_json(args.json, {"benchmark": "impact_skill", "data": args.data, "side": args.side,
                                  "period_s": args.period_s, "grid": grid.tolist(), "scores": rows,
                                  "fit_quality": quality, "best_by_mae": best,
                                  "environment": environment()})
    print(f"wrote {path} and {args.png}")
    return 0


def plot(book: Any, fit: dict[str, Any], side: str, png: str) -> None:
    """Beta vs half-spread and gamma vs visible depth, per period, over the day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    periods = fit["periods"]
    t = np.array([np.datetime64(p["start"].rstrip("Z")) for p in periods])
    beta = np.array([np.nan if p["beta"] is None else p["beta"] for p in periods])
    gamma = np.array([np.nan if p["gamma"] is None else p["gamma"] for p in periods])
    period_ns = round(fit["period_s"] * NS_PER_S)
    origin = int(book.ts_event[0]) // period_ns * period_ns
    idx = (book.ts_event - origin) // period_ns
    sz = book.ask_sz if side == "buy" else book.bid_sz
    ok = (book.bid_sz[:, 0] > 0) & (book.ask_sz[:, 0] > 0)
    cnt = np.bincount(idx[ok], minlength=len(periods))[:len(periods)].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.bincount(idx[ok], weights=0.5 * book.spread()[ok], minlength=len(periods))[:len(periods)] / cnt
        depth = np.bincount(idx[ok], weights=sz[ok].sum(axis=1), minlength=len(periods))[:len(periods)] / cnt
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    a1.plot(t, beta, lw=1, label="beta ($/share)")
    a1.plot(t, half, lw=1, alpha=0.8, label="half-spread ($)")
    a1.set_ylabel("dollars per share")
    a1.legend(loc="upper right")
    a1.set_title(f"{fit['symbol']} {side}: per-period quadratic impact fit vs the book")
    a2.semilogy(t, gamma, lw=1, color="C2", label="gamma ($/share^2)")
    a2.set_ylabel("gamma")
    a3 = a2.twinx()
    a3.plot(t, depth, lw=1, color="C3", alpha=0.7, label=f"visible {('ask' if side == 'buy' else 'bid')} depth (shares)")
    a3.set_ylabel("shares")
    h1, l1 = a2.get_legend_handles_labels()
    h2, l2 = a3.get_legend_handles_labels()
    a2.legend(h1 + h2, l1 + l2, loc="upper right")
    a2.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    a2.set_xlabel("time (UTC)")
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
