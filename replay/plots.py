"""PNG plots of a replay (matplotlib, Agg backend: no display needed).

- ``schedules.png``: shares per period of each strategy on the first window,
  with the market volume per period (the VWAP benchmark's shape) behind.
- ``cumulative.png``: cumulative fills of each strategy on the first window,
  against the TWAP line and the market's cumulative volume scaled to ``Q``.
- ``impact.png``: the MPC's impact inputs at each decision over the day
  (``beta`` in cents per share and ``gamma``), all windows.
- ``costs.png``: controllable cost (spread + impact) and implementation
  shortfall (bps) per strategy across windows.
- ``paired.png``: per-window paired differences MPC - TWAP and MPC - VWAP,
  controllable cost and total shortfall, one point per window, with the mean
  and its bootstrap 95% interval (``summary["comparisons"]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from agent.core.model import NS_PER_S
from replay.runner import ReplayResult
from replay.session import local_time
from replay.tca import Market


def _minutes(ts: np.ndarray, t0: int) -> np.ndarray:
    return (np.asarray(ts, np.int64) - t0) / (60 * NS_PER_S)


def plot_all(result: ReplayResult, summary: dict[str, Any], out: Path, market: Market) -> list[str]:
    """Write the PNGs into ``out``; return their file names."""
    out.mkdir(parents=True, exist_ok=True)
    names = [_paired(summary, out), _costs(summary, out), _schedules(result, out, market),
             _cumulative(result, out, market), _impact(result, out)]
    return [n for n in names if n]


def _schedules(result: ReplayResult, out: Path, market: Market) -> str:
    w = result.windows[0]
    parent = next(iter(w.runs.values())).parent
    n = parent.n_periods
    fig, ax = plt.subplots(figsize=(9, 4))
    vol = market.volume_per_period(parent.start_ns, parent.period_ns, n)
    ax2 = ax.twinx()
    ax2.bar(np.arange(n), vol, color="0.85", width=1.0, label="market volume")
    ax2.set_ylabel("market shares / period")
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    for name, run in w.runs.items():
        q = np.zeros(n)
        for c in run.children:
            if 0 <= c.period_index < n:
                q[c.period_index] += c.quantity
        ax.step(np.arange(n), q, where="mid", label=name, lw=1.2)
    ax.set_xlabel("period")
    ax.set_ylabel("child order shares")
    ax.set_title("Schedules (first window) vs market volume")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "schedules.png", dpi=90)
    plt.close(fig)
    return "schedules.png"


def _cumulative(result: ReplayResult, out: Path, market: Market) -> str:
    w = result.windows[0]
    parent = next(iter(w.runs.values())).parent
    t0, q = parent.start_ns, parent.quantity
    fig, ax = plt.subplots(figsize=(9, 4))
    for name, run in w.runs.items():
        ts = np.array([f.ts_event for f in run.fills], np.int64)
        qty = np.array([f.quantity for f in run.fills])
        if ts.size:
            ax.step(_minutes(ts, t0), np.cumsum(qty), where="post", label=name, lw=1.2)
    length = (parent.end_ns - t0) / (60 * NS_PER_S)
    ax.plot([0, length], [0, q], "k:", lw=1, label="linear (TWAP)")
    a, b = np.searchsorted(market.trade_ts, [t0, parent.end_ns])
    mv = np.cumsum(market.trade_sz[a:b])
    if mv.size and mv[-1] > 0:
        ax.plot(_minutes(market.trade_ts[a:b], t0), q * mv / mv[-1], color="0.5", lw=1,
                label="market volume (scaled)")
    ax.set_xlabel("minutes from start")
    ax.set_ylabel("cumulative shares filled")
    ax.set_title("Cumulative fills (first window)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "cumulative.png", dpi=90)
    plt.close(fig)
    return "cumulative.png"


def _impact(result: ReplayResult, out: Path) -> str:
    ts, beta, gamma = [], [], []
    for w in result.windows:
        run = w.runs.get("mpc") or next(iter(w.runs.values()))
        for d in run.decisions:
            if d.skipped is None:
                ts.append(d.ts_ns)
                beta.append(d.beta)
                gamma.append(d.gamma)
    if not ts:
        return ""
    order = np.argsort(ts)
    t = _minutes(np.array(ts)[order], int(result.book.ts_event[0]))
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    a1.plot(t, 100 * np.array(beta)[order], ".", ms=3)
    a1.set_ylabel("beta (cents/share)")
    a2.plot(t, np.array(gamma)[order], ".", ms=3, color="C1")
    a2.set_ylabel("gamma ($/share^2)")
    a2.set_yscale("log")
    a2.set_xlabel("minutes from the first event of the day")
    a1.set_title("Impact estimates at each decision")
    fig.tight_layout()
    fig.savefig(out / "impact.png", dpi=90)
    plt.close(fig)
    return "impact.png"


def _costs(summary: dict[str, Any], out: Path) -> str:
    names = list(summary["strategies"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, key, label in ((axes[0], "controllable_bps", "controllable: spread + impact (bps)"),
                           (axes[1], "shortfall_bps", "implementation shortfall (bps)")):
        data = [[r["strategies"][n][key] for r in summary["runs"]] for n in names]
        if len(summary["runs"]) > 1:
            ax.boxplot(data, showmeans=True)
            ax.set_xticks(range(1, len(names) + 1), names)
        else:
            ax.bar(names, [d[0] for d in data], color="C0")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel(label)
    fig.suptitle(f"Cost per strategy across {len(summary['runs'])} window(s), bps of arrival notional")
    fig.tight_layout()
    fig.savefig(out / "costs.png", dpi=90)
    plt.close(fig)
    return "costs.png"


PAIRED_BENCHMARKS: tuple[str, ...] = ("twap", "vwap")


def _paired(summary: dict[str, Any], out: Path) -> str:
    """Per-window MPC - benchmark differences with the mean and its 95% interval (two panels)."""
    comps = {b: summary["comparisons"][f"mpc-{b}"] for b in PAIRED_BENCHMARKS
             if f"mpc-{b}" in summary.get("comparisons", {})}
    if not comps:
        return ""
    n = summary["windows"]
    labels = [local_time(r["start"], summary.get("tz", "UTC")) for r in summary["runs"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))  # own scales: drift would flatten the controllable
    panels = ((axes[0], "controllable (spread + impact)", lambda c: c["controllable_bps"]),
              (axes[1], "total shortfall", lambda c: c))
    for ax, title, pick in panels:
        for j, (bench, c) in enumerate(comps.items()):
            d, off = pick(c), 0.15 * (j - (len(comps) - 1) / 2)
            ax.plot(np.arange(n) + off, d["differences_bps"], "o", color=f"C{j}", ms=5,
                    label=f"MPC - {bench.upper()}")
            if d["mean_bps"] is not None:
                lo, hi = d["ci95_bps"] or (d["mean_bps"], d["mean_bps"])
                ax.errorbar([n + 0.5 + off], [d["mean_bps"]], yerr=[[d["mean_bps"] - lo], [hi - d["mean_bps"]]],
                            fmt="D", color=f"C{j}", capsize=4, ms=6)
        ax.axhline(0, color="k", lw=0.6)
        ax.axvline(n - 0.25, color="0.7", lw=0.6, ls=":")
        ax.set_xticks([*range(n), n + 0.5], [*labels, "mean\n95% CI"], fontsize=8,
                      rotation=45 if n > 8 else 0)
        ax.set_title(title)
        ax.set_xlabel(f"window start ({summary.get('tz', 'UTC')})")
        ax.set_ylabel("MPC minus benchmark, bps (< 0: MPC cheaper)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Paired by window: {n} window(s) of {summary['window_minutes']:.0f} min")
    fig.tight_layout()
    fig.savefig(out / "paired.png", dpi=90)
    plt.close(fig)
    return "paired.png"
