"""The ``mpc-agent`` command (also ``python -m agent``).

Sub-commands follow DESIGN.md section 6. This module only parses arguments
and wires components together; the work happens in the modules it calls
(imported lazily so that ``mpc-agent inspect`` does not pay for osqp or Kafka).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__
from agent.core.errors import MpcAgentError

log = logging.getLogger("agent.app.cli")

FORMATS = ("auto", "mbp10-csv", "dbn", "lobster", "parquet")


def _add_data_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--data", nargs="+", metavar="PATH", required=required,
                   help="data file(s); default: the embedded sample day")
    p.add_argument("--format", default="auto", choices=FORMATS, help="file format (default: detect)")
    p.add_argument("--symbol", default=None, help="symbol to use (default: the first by name in the data)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpc-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mpc-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="what a data file holds")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_inspect)

    p = sub.add_parser("convert", help="any supported format to our Parquet schema")
    p.add_argument("paths", nargs="+", metavar="IN")
    p.add_argument("--to", required=True, metavar="OUT.parquet")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.set_defaults(handler=_cmd_convert)

    p = sub.add_parser("fit", help="per-period impact, volume and volatility estimates")
    _add_data_args(p)
    p.add_argument("--side", default="buy", choices=("buy", "sell"))
    p.add_argument("--period-s", type=float, default=60.0)
    p.add_argument("--quantity", type=float, default=None,
                   help="parent quantity used to choose the fitting size range")
    p.add_argument("--participation", type=float, default=0.1,
                   help="max participation used for the top-level cap list")
    p.add_argument("--out", default=None, metavar="FILE.json")
    p.add_argument("--profile", default=None, metavar="FILE.json",
                   help="intraday profiles (mpc-agent profile): add its expectation per period")
    p.set_defaults(handler=_cmd_fit)

    p = sub.add_parser("plan", help="one optimal schedule (offline)")
    p.add_argument("--quantity", type=float, required=True)
    p.add_argument("--periods", type=int, required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--impact", metavar="FILE.json", help='{"beta": [N], "gamma": [N], "cap": [N]?}')
    src.add_argument("--data", metavar="PATH", help="fit impact coefficients from a data file")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--symbol", default=None)
    p.add_argument("--side", default="buy", choices=("buy", "sell"))
    p.add_argument("--period-s", type=float, default=60.0)
    p.add_argument("--risk-aversion", type=float, default=0.0)
    p.add_argument("--sigma", type=float, default=0.0, help="price volatility, dollars per period")
    p.add_argument("--out", default=None, metavar="FILE.json")
    p.set_defaults(handler=_cmd_plan)

    p = sub.add_parser("replay", help="historical replay with TCA against benchmarks")
    _add_data_args(p)
    p.add_argument("--side", required=True, choices=("buy", "sell"))
    p.add_argument("--quantity", type=float, required=True)
    p.add_argument("--start", default=None, metavar="HH:MM")
    p.add_argument("--end", default=None, metavar="HH:MM")
    p.add_argument("--period-s", type=float, default=60.0)
    p.add_argument("--strategies", default="mpc,twap,vwap,pov,ac,open-loop")
    p.add_argument("--starts", type=int, default=1)
    p.add_argument("--out", default="out/replay", metavar="DIR")
    p.add_argument("--tz", default="America/New_York")
    p.add_argument("--max-participation", type=float, default=None)
    p.add_argument("--risk-aversion", type=float, default=None)
    p.add_argument("--latency-ms", type=float, default=None)
    p.add_argument("--lot-shares", type=float, default=1.0, help="the venue's lot: orders and fills in whole lots")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--profile", default=None, metavar="FILE.json",
                   help="intraday profiles (mpc-agent profile); default: learned from the earlier days")
    p.set_defaults(handler=_cmd_replay)
    _add_profile_command(sub)

    p = sub.add_parser("run", help="the live service")
    p.add_argument("--config", default=None, metavar="FILE.toml")
    p.add_argument("--feed", choices=("kafka", "file"), default=None)
    p.add_argument("--data", nargs="+", default=None, metavar="PATH")
    p.add_argument("--speed", type=float, default=None, help="file feed pace (0 = as fast as possible)")
    p.add_argument("--print-config", action="store_true")
    p.add_argument("--format", default=None, choices=FORMATS)
    p.add_argument("--symbol", default=None)
    p.add_argument("--sink", choices=("jsonl", "kafka"), default=None, help="file feed: where child orders go")
    p.add_argument("--out", default=None, metavar="FILE.jsonl", help="file feed: child orders JSONL path")
    p.add_argument("--parent-order", default=None, metavar="FILE.json")
    p.add_argument("--side", default=None, choices=("buy", "sell"))
    p.add_argument("--quantity", type=float, default=None)
    p.add_argument("--start", default=None, help="HH:MM (parent.tz), ISO-8601 or ns")
    p.add_argument("--end", default=None)
    p.add_argument("--period-s", type=float, default=None)
    p.add_argument("--bootstrap-servers", default=None)
    p.add_argument("--metrics-port", type=int, default=None)
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser("publish", help="put a data file, a parent order, a cancel or a kill switch on Kafka")
    p.add_argument("path", nargs="?", default=None, metavar="PATH")
    p.add_argument("--topic", default=None)
    p.add_argument("--speed", type=float, default=0.0)
    p.add_argument("--bootstrap-servers", default=None)
    p.add_argument("--parent-order", default=None, metavar="FILE.json")
    p.add_argument("--config", default=None, metavar="FILE.toml")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--symbol", default=None)
    p.add_argument("--parent-id", default=None, help="parent order from flags (with --side/--quantity/...)")
    p.add_argument("--side", default=None, choices=("buy", "sell"))
    p.add_argument("--quantity", type=float, default=None)
    p.add_argument("--start", default=None, help="HH:MM (parent.tz), ISO-8601 or ns")
    p.add_argument("--end", default=None)
    p.add_argument("--period-s", type=float, default=None)
    p.add_argument("--cancel", default=None, metavar="PARENT_ID",
                   help="send a parent_cancel.v1 for PARENT_ID instead (needs --symbol: the message key)")
    p.add_argument("--kill-switch", default=None, choices=("on", "off"),
                   help="send a kill_switch.v1 to every partition of the parent-orders topic instead (needs --reason)")
    p.add_argument("--reason", default=None, help="with --cancel or --kill-switch: the reason carried by the message")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.set_defaults(handler=_cmd_publish)
    return parser


def _add_profile_command(sub: Any) -> None:
    p = sub.add_parser("profile", help="learn intraday profiles (cost, volume, volatility) from days")
    p.add_argument("--data", nargs="+", metavar="PATH",
                   help="files, each one or several days (default: the sample's days before its last)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="file format (default: detect)")
    p.add_argument("--symbol", default=None, help="comma-separated symbols (default: every symbol)")
    p.add_argument("--tz", default="America/New_York", help="exchange time zone of the time of day")
    p.add_argument("--bucket-min", type=float, default=30.0, help="time-of-day bucket, minutes")
    p.add_argument("--side", default="both", choices=("buy", "sell", "both"),
                   help="book side(s) walked for the cost level")
    p.add_argument("--before", default=None, metavar="YYYY-MM-DD", help="use only days before this date")
    p.add_argument("--out", default=None, metavar="FILE.json", help="default: print the JSON")
    p.set_defaults(handler=_cmd_profile)


# ---------------------------------------------------------------- handlers
def _emit_json(obj: Any, out: str | None) -> None:
    text = json.dumps(obj, indent=2, allow_nan=False)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
        log.info("wrote %s", out)
    else:
        print(text)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from feeds.files.inspect import inspect_paths, render_text

    summary = inspect_paths(args.paths, fmt=args.format)
    print(json.dumps(summary, allow_nan=False) if args.json else render_text(summary))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from feeds.files.convert import convert_to_parquet

    stats = convert_to_parquet(args.paths, args.to, fmt=args.format)
    print(json.dumps(stats))
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from replay.fit import impact_from_files

    result = impact_from_files(args.data, args.format, symbol=args.symbol, side=args.side,
                               period_s=args.period_s, quantity=args.quantity,
                               participation=args.participation)
    if args.profile:
        from datetime import date

        from replay.profile_cmd import attach_profile_to_fit, profile_for_replay

        day = date.fromisoformat(str(result["start"])[:10])  # UTC date of the first period
        prof, notes = profile_for_replay(args.profile, result["symbol"], day)
        attach_profile_to_fit(result, prof, args.profile)
        print("\n".join(notes), file=sys.stderr)
    _emit_json(result, args.out)
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from replay.profile_cmd import profile_command

    return profile_command(args)


def _cmd_plan(args: argparse.Namespace) -> int:
    """One optimal schedule (DESIGN.md section 6), printed or written as strict JSON."""
    import math

    from agent.core.errors import ConfigError
    from agent.core.mpc.offline import plan_offline

    n = int(args.periods)
    if n < 1:
        raise ConfigError(f"--periods must be >= 1, got {n}")
    if not (math.isfinite(args.quantity) and args.quantity > 0):
        raise ConfigError(f"--quantity must be a positive number of shares, got {args.quantity}")
    sigma = float(args.sigma)
    if args.impact:
        try:
            spec = json.loads(Path(args.impact).read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{args.impact} is not valid JSON ({exc}); expected "
                              '{"beta": [N], "gamma": [N], "cap": [N]?}') from exc
        if not isinstance(spec, dict) or "beta" not in spec or "gamma" not in spec:
            raise ConfigError(f'{args.impact} must hold {{"beta": [N], "gamma": [N], "cap": [N]?}}')
    else:
        from replay.fit import impact_from_files

        spec = impact_from_files([args.data], fmt=args.format, symbol=args.symbol,
                                 side=args.side, period_s=args.period_s, n_periods=n,
                                 quantity=args.quantity)
        if args.risk_aversion > 0 and sigma == 0 and spec.get("sigma"):
            sigma = float(spec["sigma"])
            log.info("using the fitted volatility sigma = %.6g $/period", sigma)
    beta = _plan_series(spec, "beta", n, args.impact or args.data, required=True)
    gamma = _plan_series(spec, "gamma", n, args.impact or args.data, required=True)
    cap = _plan_series(spec, "cap", n, args.impact or args.data, required=False)
    assert beta is not None and gamma is not None  # required=True raised otherwise
    out = plan_offline(args.quantity, beta, gamma, cap, risk_aversion=args.risk_aversion,
                       sigma=sigma)
    out["sigma"] = sigma
    _emit_json(out, args.out)
    return 0


def _plan_series(spec: dict[str, Any], key: str, n: int, source: str,
                 *, required: bool) -> list[float] | None:
    """``spec[key]`` as N floats (null cap = no cap); longer lists are cut to N with a warning."""
    from agent.core.errors import ConfigError

    values = spec.get(key)
    if values is None:
        if required:
            raise ConfigError(f'{source}: "{key}" is missing; expected a list of {n} numbers')
        return None
    if not isinstance(values, list) or len(values) < n:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise ConfigError(f'{source}: "{key}" must be a list of at least --periods={n} numbers, got {got}')
    if len(values) > n:
        log.warning("%s: %s has %d entries, using the first %d (--periods)", source, key,
                    len(values), n)
    out: list[float] = []
    for i, v in enumerate(values[:n]):
        if v is None and key == "cap":
            out.append(float("inf"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            raise ConfigError(f'{source}: "{key}"[{i}] = {v!r} is not a number')
    return out


def _cmd_replay(args: argparse.Namespace) -> int:
    from replay.profile_cmd import replay_inputs
    from replay.report import render_table, write_outputs
    from replay.runner import ReplaySpec, replay
    from replay.session import resolve_window
    from replay.simulator import SimulatorSettings

    inputs = replay_inputs(args.data, args.format, args.symbol, args.tz, args.profile)
    print("\n".join(inputs.notes), flush=True)
    days = inputs.days
    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    try:
        start, end, s0, s1 = resolve_window(days, args.start, args.end)
        sim = SimulatorSettings(lot_shares=args.lot_shares,
                                **({"latency_ms": args.latency_ms} if args.latency_ms is not None else {}))
        spec = ReplaySpec(inputs.symbol, args.side, args.quantity, start, end, args.period_s,
                          max_participation=args.max_participation,
                          risk_aversion=args.risk_aversion or 0.0, strategies=strategies, simulator=sim)
        result = replay(days.book, spec, starts=args.starts, session=(s0, s1), history=days.history,
                        progress=not args.no_progress, profile=inputs.profile)
    except ValueError as exc:
        raise MpcAgentError(str(exc)) from exc
    summary = write_outputs(result, args.out, tz=args.tz)
    if inputs.rejected:
        log.warning("rejected rows: %s", inputs.rejected)
    print(render_table(summary))
    print(f"wrote {Path(args.out) / 'summary.json'} and {Path(args.out) / 'report.html'}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from agent.app.builder import run_command

    return run_command(args)


def _cmd_publish(args: argparse.Namespace) -> int:
    from agent.app.publish import publish_command

    return publish_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        return int(args.handler(args))
    except MpcAgentError as exc:
        print(f"mpc-agent {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"mpc-agent {args.command}: error: file not found: {exc.filename}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
