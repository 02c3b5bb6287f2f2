"""Replay outputs: ``summary.json`` (DESIGN.md section 6), the console tables, ``report.html``.

``summary.json``::

    {"symbol", "side", "quantity", "start", "end", "period_s", "arrival_mid",
     "strategies": {NAME: {"filled_quantity", "average_price", "shortfall_bps",
                           "shortfall_dollars", "child_orders", "max_participation",
                           "solve_us_p50", "solve_us_p99", "fallbacks",
                           "controllable_bps", "controllable_dollars", "timing_bps", ...extra}},
     "runs": [{"start", "end", "arrival_mid", "strategies": {NAME: {...}}}],
     "comparisons": {"mpc-twap": {"n", "mean_bps", "median_bps", "ci95_bps", "a_better",
                                  "differences_bps", "controllable_bps": {same keys},
                                  "timing_bps": {same keys}}, "mpc-vwap": {...}, ...},
     "session": {"start", "end"}, "tz", "lot_shares", "notes": [...], ...}

``start``/``end`` are the parent order's window as requested; with ``--starts
K`` the replayed windows are in ``runs`` (K windows of that length spread over
the session, ``session``). With one window ``strategies`` is that window's
TCA; with several it is the aggregate over windows (:func:`replay.tca.aggregate`).
``comparisons`` pairs the MPC with every other strategy by window
(:func:`replay.tca.compare`): the top-level keys compare total shortfall,
``controllable_bps`` the cost the schedule controls (spread + impact).
Extra fields are only ever added. ``solve_us_*`` is null for strategies that
never solve an optimisation problem. Strict JSON: no NaN. Times are ISO-8601
UTC; the console and the HTML page show them in the exchange's zone (``tz``).
"""

from __future__ import annotations

import html
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from replay.runner import ReplayResult
from replay.session import local_time, session_bounds
from replay.tca import Market, aggregate, analyse, compare

Column = tuple[str, str, str]  # header, key (dotted for nested), format
COST_COLUMNS: tuple[Column, ...] = (
    ("strategy", "strategy", "{}"), ("ctrl bps", "controllable_bps", "{:.2f}"),
    ("spread bps", "components_bps.spread", "{:.2f}"), ("impact bps", "components_bps.impact", "{:.2f}"),
    ("ctrl $", "controllable_dollars", "{:,.0f}"), ("timing bps", "timing_bps", "{:.2f}"),
    ("unfilled bps", "components_bps.opportunity", "{:.2f}"), ("fees bps", "components_bps.fees", "{:.2f}"),
    ("IS bps", "shortfall_bps", "{:.2f}"), ("IS $", "shortfall_dollars", "{:,.0f}"),
    ("vs VWAP bps", "vwap_shortfall_bps", "{:.2f}"),
)
EXECUTION_COLUMNS: tuple[Column, ...] = (
    ("strategy", "strategy", "{}"), ("filled sh", "filled_quantity", "{:,.0f}"),
    ("fill %", "fill_rate", "{:.1%}"), ("avg px $", "average_price", "{:.4f}"),
    ("part %", "participation", "{:.1%}"), ("max part %", "max_participation", "{:.0%}"),
    ("max 5m part %", "max_participation_5min", "{:.0%}"),
    ("children", "child_orders", "{:,.0f}"), ("solve p50 us", "solve_us_p50", "{:,.0f}"),
    ("solve p99 us", "solve_us_p99", "{:,.0f}"), ("fallbacks", "fallbacks", "{:,.0f}"),
)
COMPARISON_HEAD: tuple[str, ...] = ("MPC - benchmark", "ctrl mean bps", "ctrl 95% CI", "MPC cheaper",
                                    "IS mean bps", "IS 95% CI", "MPC cheaper")


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


def build_summary(result: ReplayResult, market: Market | None = None, *, seed: int = 20250403,
                  tz: str = "UTC") -> dict[str, Any]:
    """The ``summary.json`` object of a replay (see the module docstring); ``tz`` names the display zone."""
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
    comparisons = ({f"mpc-{b}": compare(runs, "mpc", b, seed=seed) for b in names if b != "mpc"}
                   if "mpc" in names else {})
    s0, s1 = session_bounds(result.book)
    summary = {
        "symbol": spec.symbol, "side": spec.side, "quantity": spec.quantity,
        "start": iso(spec.start_ns), "end": iso(spec.end_ns),
        "period_s": spec.period_s, "arrival_mid": runs[0]["arrival_mid"],
        "strategies": strategies, "runs": runs, "comparisons": comparisons,
        "windows": len(runs), "window_minutes": (spec.end_ns - spec.start_ns) / 60e9,
        "session": {"start": iso(s0), "end": iso(s1)}, "tz": tz, "lot_shares": spec.simulator.lot_shares,
        "max_participation": spec.max_participation if spec.max_participation is not None
        else spec.engine.max_participation,
        "risk_aversion": spec.risk_aversion, "latency_ms": spec.simulator.latency_ms,
        "vwap_profile": {"look_ahead": result.volume_curve.look_ahead, "history_days": result.history_days},
        "notes": _notes(result, names),
    }
    return _clean(summary)


def _notes(result: ReplayResult, names: list[str]) -> list[str]:
    notes = []
    if "vwap" in names and result.volume_curve.look_ahead:
        notes.append("VWAP's volume profile was learned from the replayed day itself (look-ahead: "
                     "it knows the day's volume shape in advance); give several days to avoid it.")
    elif "vwap" in names:
        notes.append(f"VWAP's volume profile was learned from {result.history_days} other day(s).")
    notes.append("Costs in bps of the arrival notional (Q x arrival mid), positive = cost. ctrl = spread + "
                 "impact against the mid of each child's decision book: what the schedule controls. "
                 "timing = mid drift from arrival to each decision; unfilled shares are priced at the end "
                 "mid (never hidden). IS = ctrl + timing + unfilled + fees.")
    return notes


# ------------------------------------------------------------------ tables
def _fmt(v: Any, spec: str = "{:.2f}") -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        text = spec.format(v)
        return text[1:] if text[:1] in "+-" and not text.strip("+-0.,%") else text  # no "-0.00"
    return str(v)


def _get(row: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        row = row.get(part) if isinstance(row, dict) else None  # type: ignore[assignment]
    return row


def table_rows(summary: dict[str, Any], columns: tuple[Column, ...] = COST_COLUMNS) -> list[list[str]]:
    """One row of formatted cells per strategy for ``columns``."""
    return [[_fmt(_get({**s, "strategy": name}, key), spec) for _, key, spec in columns]
            for name, s in summary["strategies"].items()]


def _ci(c: dict[str, Any]) -> str:
    ci = c["ci95_bps"]
    return f"[{_fmt(ci[0], '{:+.2f}')}, {_fmt(ci[1], '{:+.2f}')}]" if ci else "n/a"


def comparison_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Per benchmark: controllable then total, each as mean, 95% CI, windows MPC was cheaper."""
    rows = []
    for key, c in summary.get("comparisons", {}).items():
        k = c["controllable_bps"]
        rows.append([key.removeprefix("mpc-"), _fmt(k["mean_bps"], "{:+.2f}"), _ci(k), f"{k['a_better']}/{k['n']}",
                     _fmt(c["mean_bps"], "{:+.2f}"), _ci(c), f"{c['a_better']}/{c['n']}"])
    return rows


def _align(head: list[str] | tuple[str, ...], rows: list[list[str]]) -> list[str]:
    """Text table: first column left-aligned, the rest right-aligned, a rule under the header."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def line(cells: list[str] | tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return [line(head), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def title_lines(summary: dict[str, Any]) -> list[str]:
    """The order (its own window, as requested) and, separately, the windows replayed and the session."""
    tz, n = summary["tz"], summary["windows"]
    day = local_time(summary["start"], tz, "%Y-%m-%d")
    a, b = local_time(summary["start"], tz), local_time(summary["end"], tz)
    s0, s1 = local_time(summary["session"]["start"], tz), local_time(summary["session"]["end"], tz)
    lot = summary.get("lot_shares", 1.0)
    order = (f"{summary['symbol']} {summary['side']} {summary['quantity']:,.0f} shares, "
             f"{summary['window_minutes']:.0f}-min order {a}-{b} {tz} on {day}, period {summary['period_s']:g} s, "
             f"lot {lot:g} share{'s' if lot != 1 else ''}, max participation {summary['max_participation']:.0%}")
    if n == 1:
        where = f"replayed on that window; session {s0}-{s1}; arrival mid {summary['arrival_mid']:.4f}"
    else:
        starts = ", ".join(local_time(r["start"], tz) for r in summary["runs"])
        where = (f"replayed on {n} windows of {summary['window_minutes']:.0f} min spread over the session "
                 f"{s0}-{s1} (the requested times set the length), starting {starts}")
    return [order, where]


def render_table(summary: dict[str, Any]) -> str:
    """The console report: title, cost table, execution table, paired comparisons, notes."""
    n = summary["windows"]
    over = "one window" if n == 1 else f"mean over {n} windows"
    out = [*title_lines(summary), "",
           f"cost ({over}; bps of arrival notional, positive = cost; ctrl = spread + impact)",
           *_align([h for h, _, _ in COST_COLUMNS], table_rows(summary, COST_COLUMNS)), "",
           f"execution ({'one window' if n == 1 else f'{n} windows: means; children, fallbacks summed'})",
           *_align([h for h, _, _ in EXECUTION_COLUMNS], table_rows(summary, EXECUTION_COLUMNS))]
    rows = comparison_rows(summary)
    if rows:
        out += ["", f"paired by window, MPC minus benchmark (bps; negative = MPC cheaper; seeded bootstrap "
                    f"95% CI of the mean over {n} window{'s' if n > 1 else ''})",
                *_align(COMPARISON_HEAD, rows)]
    out += ["", *(f"note: {t}" for t in summary.get("notes", []))]
    return "\n".join(out)


# -------------------------------------------------------------------- html
def _html_table(head: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def write_html(summary: dict[str, Any], plots: list[str], path: Path) -> None:
    """A self-contained report page (the PNGs sit next to it)."""
    first, second = title_lines(summary)
    cost = _html_table([h for h, _, _ in COST_COLUMNS], table_rows(summary, COST_COLUMNS))
    exe = _html_table([h for h, _, _ in EXECUTION_COLUMNS], table_rows(summary, EXECUTION_COLUMNS))
    rows = comparison_rows(summary)
    comps = _html_table(COMPARISON_HEAD, rows) if rows else "<p>none (no MPC run)</p>"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary.get("notes", []))
    imgs = "".join(f'<figure><img src="{html.escape(p)}" alt="{html.escape(p)}"></figure>' for p in plots)
    title = html.escape(f"Replay TCA: {summary['symbol']} {summary['side']} {summary['quantity']:,.0f}")
    path.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}</style>
</head><body>
<h1>{title}</h1>
<p>{html.escape(first)}<br>{html.escape(second)}</p>
<h2>Cost (bps of the arrival notional, positive = cost)</h2>
<p>ctrl = spread + impact, against the mid of each child order's decision book: the part the schedule
controls. timing = mid drift from arrival to each decision, the same market noise for every schedule of a
window. IS (implementation shortfall) = ctrl + timing + unfilled + fees.</p>
{cost}
<h2>Execution</h2>
{exe}
<h2>Paired by window: MPC minus benchmark (bps; negative = MPC cheaper)</h2>
{comps}
<h2>Notes</h2><ul>{notes}</ul>
{imgs}
</body></html>
""")


def write_outputs(result: ReplayResult, out_dir: str | Path, *, plots: bool = True,
                  tz: str = "UTC") -> dict[str, Any]:
    """Write ``summary.json``, the PNGs and ``report.html`` into ``out_dir``; return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    market = Market.from_book(result.book)
    summary = build_summary(result, market, tz=tz)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    names: list[str] = []
    if plots:
        from replay.plots import plot_all

        names = plot_all(result, summary, out, market)
    write_html(summary, names, out / "report.html")
    return summary
