"""Replay outputs: ``summary.json`` (DESIGN.md section 6), the console table, ``report.html``.

``summary.json``::

    {"symbol", "side", "quantity", "start", "end", "period_s", "arrival_mid",
     "strategies": {NAME: {"filled_quantity", "average_price", "shortfall_bps",
                           "shortfall_dollars", "child_orders", "max_participation",
                           "solve_us_p50", "solve_us_p99", "fallbacks", ...extra}},
     "runs": [{"start", "end", "arrival_mid", "strategies": {NAME: {...}}}],
     "comparisons": {"mpc-twap": {...}, "mpc-vwap": {...}}, "notes": [...], ...}

With one window ``strategies`` is that window's TCA; with ``--starts K`` it
is the aggregate over windows (:func:`replay.tca.aggregate`) and
``comparisons`` holds the paired differences (:func:`replay.tca.paired_comparison`).
Extra fields are only ever added (unfilled quantity, fill rate, cost vs
interval VWAP, spread/impact/timing split, ...). ``solve_us_*`` is null for
strategies that never solve an optimisation problem. Strict JSON: no NaN.
"""

from __future__ import annotations

import html
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from replay.runner import ReplayResult
from replay.tca import Market, aggregate, analyse, paired_comparison

TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("strategy", "strategy", "{}"), ("filled", "filled_quantity", "{:,.0f}"),
    ("fill%", "fill_rate", "{:.1%}"), ("avg px", "average_price", "{:.4f}"),
    ("IS bps", "shortfall_bps", "{:.2f}"), ("IS $", "shortfall_dollars", "{:,.0f}"),
    ("vs VWAP bps", "vwap_shortfall_bps", "{:.2f}"), ("spread", "spread", "{:.2f}"),
    ("impact", "impact", "{:.2f}"), ("timing", "timing", "{:.2f}"),
    ("part", "participation", "{:.1%}"), ("max part", "max_participation", "{:.0%}"),
    ("children", "child_orders", "{:,.0f}"), ("solve p50 us", "solve_us_p50", "{:,.0f}"),
    ("solve p99 us", "solve_us_p99", "{:,.0f}"), ("fallbacks", "fallbacks", "{:,.0f}"),
)


def iso(ts_ns: int) -> str:
    """ISO-8601 UTC with nanoseconds, e.g. ``2025-04-03T13:30:00.000000000Z``."""
    sec, ns = divmod(int(ts_ns), 1_000_000_000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def build_summary(result: ReplayResult, market: Market | None = None, *, seed: int = 20250403) -> dict[str, Any]:
    """The ``summary.json`` object of a replay (see the module docstring)."""
    market = market or Market.from_book(result.book)
    spec = result.spec
    runs: list[dict[str, Any]] = []
    for w in result.windows:
        tca = {name: analyse(run, market) for name, run in w.runs.items()}
        first = next(iter(tca.values()))
        runs.append({"start": iso(w.start_ns), "end": iso(w.end_ns), "arrival_mid": first["arrival_mid"],
                     "end_mid": first["end_mid"], "interval_vwap": first["interval_vwap"],
                     "market_volume": first["market_volume"], "strategies": tca})
    names = list(spec.strategies)
    strategies = {n: aggregate([r["strategies"][n] for r in runs]) for n in names}
    comparisons: dict[str, Any] = {}
    if "mpc" in names:
        for other in ("twap", "vwap"):
            if other in names:
                comparisons[f"mpc-{other}"] = paired_comparison(
                    [r["strategies"]["mpc"]["shortfall_bps"] for r in runs],
                    [r["strategies"][other]["shortfall_bps"] for r in runs], seed=seed)
    notes = []
    if "vwap" in names and result.volume_curve.look_ahead:
        notes.append("VWAP's volume profile was learned from the replayed day itself (look-ahead: "
                     "it knows the day's volume shape in advance); give several days to avoid it.")
    elif "vwap" in names:
        notes.append(f"VWAP's volume profile was learned from {result.history_days} other day(s).")
    notes.append("Unfilled shares are priced at the end mid in the shortfall (never hidden).")
    summary = {
        "symbol": spec.symbol, "side": spec.side, "quantity": spec.quantity,
        "start": iso(result.windows[0].start_ns), "end": iso(result.windows[-1].end_ns),
        "period_s": spec.period_s, "arrival_mid": runs[0]["arrival_mid"],
        "strategies": strategies, "runs": runs, "comparisons": comparisons,
        "windows": len(runs), "window_minutes": (spec.end_ns - spec.start_ns) / 60e9,
        "max_participation": spec.max_participation if spec.max_participation is not None
        else spec.engine.max_participation,
        "risk_aversion": spec.risk_aversion, "latency_ms": spec.simulator.latency_ms,
        "vwap_profile": {"look_ahead": result.volume_curve.look_ahead, "history_days": result.history_days},
        "notes": notes,
    }
    return _clean(summary)


def _fmt(v: Any, spec: str = "{:.2f}") -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return spec.format(v)
    return str(v)


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, s in summary["strategies"].items():
        comp = s.get("components_bps", {})
        vals = {**s, **comp, "strategy": name}
        rows.append([_fmt(vals.get(key), spec) for _, key, spec in TABLE_COLUMNS])
    return rows


def render_table(summary: dict[str, Any]) -> str:
    """The TCA table as aligned text (costs in bps of the arrival mid, positive = cost)."""
    head = [h for h, _, _ in TABLE_COLUMNS]
    rows = table_rows(summary)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    title = (f"{summary['symbol']} {summary['side']} {summary['quantity']:,.0f} shares, "
             f"{summary['start']} -> {summary['end']}, {summary['windows']} window(s) of "
             f"{summary['window_minutes']:.0f} min, arrival mid {summary['arrival_mid']}")
    out = [title, *lines]
    for key, c in summary.get("comparisons", {}).items():
        ci = c["ci95_bps"]
        ci_txt = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "n/a (one window)"
        out.append(f"{key}: mean {_fmt(c['mean_bps'])} bps, median {_fmt(c['median_bps'])} bps, "
                   f"95% CI {ci_txt}, MPC cheaper in {c['a_better']}/{c['n']} windows")
    out.extend(f"note: {n}" for n in summary.get("notes", []))
    return "\n".join(out)


def write_html(summary: dict[str, Any], plots: list[str], path: Path) -> None:
    """A self-contained report page (the PNGs sit next to it)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _, _ in TABLE_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in table_rows(summary))
    comps = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(json.dumps(v))}</li>"
                    for k, v in summary.get("comparisons", {}).items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary.get("notes", []))
    imgs = "".join(f'<p><img src="{html.escape(p)}" alt="{html.escape(p)}"></p>' for p in plots)
    title = html.escape(f"Replay TCA: {summary['symbol']} {summary['side']} {summary['quantity']:,.0f}")
    path.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>{title}</h1>
<p>{html.escape(summary['start'])} &rarr; {html.escape(summary['end'])}; {summary['windows']} window(s) of
{summary['window_minutes']:.0f} min; period {summary['period_s']} s; arrival mid {summary['arrival_mid']}.
Costs are implementation shortfall in bps of the arrival mid (positive = cost); spread, impact and timing
add up to it (plus fees).</p>
<table><tr>{head}</tr>{body}</table>
<h2>Paired comparisons (bps, MPC minus benchmark; negative = MPC cheaper)</h2><ul>{comps or '<li>none</li>'}</ul>
<h2>Notes</h2><ul>{notes}</ul>
{imgs}
</body></html>
""")


def write_outputs(result: ReplayResult, out_dir: str | Path, *, plots: bool = True) -> dict[str, Any]:
    """Write ``summary.json``, the PNGs and ``report.html`` into ``out_dir``; return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    market = Market.from_book(result.book)
    summary = build_summary(result, market)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    names: list[str] = []
    if plots:
        from replay.plots import plot_all

        names = plot_all(result, summary, out, market)
    write_html(summary, names, out / "report.html")
    return summary
