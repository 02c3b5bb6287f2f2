"""``mpc-agent profile`` and the ``--profile`` option of ``replay`` and ``fit``.

- :func:`learn_profiles` reads any number of files (each may hold several
  days and symbols), splits them into trading days in the exchange time zone
  (``replay.session.read_days``) and learns one intraday profile per symbol
  plus the pooled shape (``agent.core.forecast.profile_set.ProfileSet``).
  ``before`` keeps only the days strictly before a date, so a profile for a
  replayed day never sees that day.
- :func:`profile_for_replay` picks the symbol's profile from a file (its own,
  else the pooled shape) and says, in plain words, where it comes from and
  whether it includes the replayed day (look-ahead).
- :func:`attach_profile_to_fit` adds to a ``fit`` result the profile's factor
  and its expectation for every period: ``expected = level * factor(t)``
  (volume as shares per period, sigma in $ per period), with ``level`` the
  profile's own long-run level, or this day's mean when the profile is a
  pooled shape (which has no level; the output says so).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np

from agent.core.errors import ConfigError
from agent.core.forecast.profile import KINDS, IntradayProfile
from agent.core.forecast.profile_set import ProfileSet, describe
from agent.core.model import NS_PER_S, BookLike
from replay.session import SAMPLE_DATES, SAMPLE_FILES, TradingDays, read_days

__all__ = ["ReplayInputs", "attach_profile_to_fit", "learn_profiles", "profile_command",
           "profile_for_replay", "render_profiles", "replay_inputs"]


def learn_profiles(paths: Sequence[str | Path], fmt: str = "auto", *, symbols: Sequence[str] = (),
                   tz: str = "America/New_York", bucket_s: float = 1800.0, side: str = "both",
                   before: date | None = None) -> ProfileSet:
    """Profiles of ``symbols`` (default: every symbol) from the days in ``paths``.

    Raises ``ConfigError`` when a requested symbol is missing or no day is left.
    """
    data = read_days(paths, fmt, symbol=symbols[0] if len(symbols) == 1 else None, tz=tz)
    wanted = list(symbols) or data.symbols
    missing = [s for s in wanted if s not in data.by_symbol]
    if missing:
        raise ConfigError(f"no rows for {', '.join(missing)} in the data (it holds {', '.join(data.symbols)})")
    days: dict[str, list[tuple[str, BookLike]]] = {}
    for sym in wanted:
        td = data.by_symbol[sym] if before is None else data.by_symbol[sym].before(before)
        days[sym] = [(d.isoformat(), cast(BookLike, b)) for d, b in zip(td.dates, td.books, strict=True)]
    if not any(days.values()):
        raise ConfigError(f"no trading day before {before} in the data" if before else "no trading day in the data")
    return ProfileSet.learn(days, bucket_s=bucket_s, side=side, tz=tz)


def render_profiles(ps: ProfileSet) -> str:
    """Human summary: provenance per profile and the factors at each bucket centre."""
    lines: list[str] = []
    named = [(s, p) for s, p in ps.profiles.items()] + ([("pooled", ps.pooled)] if ps.pooled else [])
    for name, p in named:
        lines.append(f"{name}: {describe(p)}")
        if p.is_flat:
            continue
        lines.append(f"  {'time':>5} " + " ".join(f"{k:>7}" for k in KINDS))
        for j, c in enumerate(p.centres_s):
            hh, mm = divmod(round(float(c)) // 60, 60)
            lines.append(f"  {hh:02d}:{mm:02d} " + " ".join(f"{p.factors[k][j]:7.2f}" for k in KINDS))
    return "\n".join(lines)


def profile_for_replay(path: str | Path, symbol: str, day: date) -> tuple[IntradayProfile, list[str]]:
    """The profile ``replay --profile FILE`` uses for ``symbol`` on ``day``, and notes about it."""
    ps = ProfileSet.load(path)
    prof = ps.for_symbol(symbol)
    notes = [f"intraday profile from {path}: {describe(prof)}"]
    if prof.pooled:
        notes.append(f"{symbol} has no history in {path}: the profile is the shape pooled over other "
                     "symbols (a prior, not the symbol's own)")
    if day.isoformat() in prof.dates:
        notes.append(f"look-ahead: the profile was learned from days that include the replayed day {day}")
    if prof.is_flat:
        notes.append(f"{path} holds no profile for {symbol} and no pooled shape: the profile is flat")
    return prof, notes


def attach_profile_to_fit(result: dict[str, Any], prof: IntradayProfile, source: str) -> dict[str, Any]:
    """Add ``profile`` (provenance, expectations per period, shape correlation) to a fit result."""
    period_s = float(result["period_s"])
    start = datetime.fromisoformat(str(result["start"]).replace("Z", "+00:00")).astimezone(UTC)
    origin = round(start.timestamp() * NS_PER_S)
    n = int(result["n_periods"])
    mid = origin + ((np.arange(n) + 0.5) * period_s * NS_PER_S).astype(np.int64)
    per_period = {"beta": 1.0, "gamma": 1.0, "volume": period_s, "sigma": math.sqrt(period_s)}
    observed = {k: np.array([np.nan if p[k] is None else p[k] for p in result["periods"]], np.float64)
                for k in KINDS}
    expected: dict[str, list[float | None]] = {}
    corr: dict[str, float | None] = {}
    for k in KINDS:
        f = prof.factor(k, mid)
        if k in prof.levels:
            level = prof.levels[k] * per_period[k]
        else:  # a pooled shape has no level: scale it to this day's mean (look-ahead on the level)
            ok = np.isfinite(observed[k])
            level = float(np.mean(observed[k][ok]) / np.mean(f[ok])) if ok.any() else math.nan
        expected[k] = [_num(x) for x in level * f]
        good = np.isfinite(observed[k]) & (observed[k] > 0)
        corr[k] = (_num(float(np.corrcoef(np.log(observed[k][good]), np.log(f[good]))[0, 1]))
                   if good.sum() > 2 and np.ptp(f[good]) > 0 else None)
    part = float(result.get("participation") or 0.0)
    expected["cap"] = [None if v is None else part * v for v in expected["volume"]]
    for i, p in enumerate(result["periods"]):
        p["profile_factor"] = {k: _num(float(prof.factor(k, int(mid[i])))) for k in KINDS}
    result["profile"] = {
        "source": source, "describe": describe(prof), "symbols": list(prof.symbols),
        "dates": list(prof.dates), "pooled": prof.pooled,
        "level_from": "profile" if prof.levels else "this day's mean (pooled shape: no level of its own)",
        "look_ahead": str(result["start"])[:10] in prof.dates,
        "expected": expected, "shape_corr": corr,
    }
    return result


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def profile_command(args: argparse.Namespace) -> int:
    """``mpc-agent profile``: learn, print a summary on stderr, write (or print) the JSON."""
    before = date.fromisoformat(args.before) if args.before else None
    paths = args.data
    if not paths:
        paths = [str(p) for p in SAMPLE_FILES]
        if not paths:
            raise ConfigError("no --data given and the embedded sample is missing; pass --data PATH...")
        if before is None:  # the sample's last day is the one `replay` replays: keep it out
            before = SAMPLE_DATES[-1]
    if not args.bucket_min > 0:
        raise ConfigError(f"--bucket-min must be positive, got {args.bucket_min}")
    symbols = [s.strip() for s in (args.symbol or "").split(",") if s.strip()]
    ps = learn_profiles(paths, args.format, symbols=symbols, tz=args.tz,
                        bucket_s=60.0 * args.bucket_min, side=args.side, before=before)
    print(render_profiles(ps), file=sys.stderr)
    if args.out:
        ps.save(args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        import json

        print(json.dumps(ps.to_dict(), indent=1, allow_nan=False))
    return 0


@dataclass(frozen=True)
class ReplayInputs:
    """What ``mpc-agent replay`` replays (see :func:`replay_inputs`)."""

    symbol: str
    days: TradingDays  # the last day is replayed, the others are history
    profile: IntradayProfile | None  # None: no history and no --profile (flat)
    notes: list[str]  # which days were history, where the profile comes from
    rejected: dict[str, int]  # rows dropped by validation, per reason


def replay_inputs(paths: Sequence[str] | None, fmt: str, symbol: str | None, tz: str,
                  profile_path: str | None) -> ReplayInputs:
    """Read the days to replay; the profile is ``profile_path``'s, else learned from the history.

    ``paths`` default to the embedded sample's days. Without ``profile_path``
    the profile is learned from the history days exactly as ``mpc-agent
    profile`` would (same estimator, ``tz`` time of day, both book sides).
    """
    files = list(paths) if paths else [str(p) for p in SAMPLE_FILES]
    if not files:
        raise ConfigError("no --data given and the embedded sample is missing; pass --data PATH...")
    data = read_days(files, fmt, symbol=symbol, tz=tz)
    sym = symbol or min(data.symbols)  # the first by name, as fit's default
    days = data.by_symbol[sym]
    hist = days.history_dates
    notes = [f"replayed day: {sym} {days.day} ({tz}); history: "
             + (f"{len(hist)} day(s) {', '.join(d.isoformat() for d in hist)} (VWAP volume curve"
                + (")" if profile_path else " and intraday profile)")
                if hist else "none (one day of data)")]
    prof: IntradayProfile | None = None
    if profile_path:
        prof, more = profile_for_replay(profile_path, sym, days.day)
        notes += more
    elif hist:
        prof = ProfileSet.learn({sym: [(d.isoformat(), cast(BookLike, b))
                                       for d, b in zip(hist, days.history, strict=True)]},
                                tz=tz, pool=False).for_symbol(sym)
        notes.append(f"intraday profile: {describe(prof)}")
    return ReplayInputs(sym, days, prof, notes, data.rejected)
