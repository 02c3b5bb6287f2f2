"""Intraday profiles of several symbols and their pooled shape: the ``profile.json`` file.

``mpc-agent profile`` writes it, ``replay --profile``, ``fit --profile`` and
the live service (``engine.profile_path``) read it. Layout (strict JSON)::

    {
      "schema": "intraday_profiles.v1",
      "tz": "America/New_York",          time zone of the time of day
      "bucket_s": 1800.0,                bucket width, seconds
      "side": "both",                    book side(s) the cost curves walked
      "symbols": {                       one IntradayProfile.to_dict() per symbol
        "SYNA": {"bucket_s", "tz", "days", "pooled": false, "symbols": ["SYNA"],
                 "dates": ["2025-03-28", ...], "centres_s": [...],
                 "factors": {"beta": [...], "gamma": [...], "volume": [...], "sigma": [...]},
                 "levels": {"beta": ..., ...}, "dispersion": {"beta": [...], ...}},
        ...
      },
      "pooled": {... same fields, "pooled": true, "levels": {} ...}   or null
    }

``factors`` are multiplicative and have mean 1 over the buckets (see
:class:`agent.core.forecast.profile.IntradayProfile`); ``centres_s`` are
seconds since local midnight in ``tz``. ``pooled`` is the equally weighted
mean shape over the symbols: :meth:`ProfileSet.for_symbol` returns it, with
``pooled: true``, for a symbol that has no profile of its own, so a report
can say that the shape is borrowed from other symbols.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.errors import ConfigError
from agent.core.forecast.profile import IntradayProfile
from agent.core.model import BookLike

SCHEMA = "intraday_profiles.v1"


@dataclass(frozen=True)
class ProfileSet:
    """Per-symbol intraday profiles and the pooled shape (a prior for symbols without history)."""

    profiles: dict[str, IntradayProfile] = field(default_factory=dict)
    pooled: IntradayProfile | None = None
    side: str = "both"

    @property
    def tz(self) -> str:
        first = next(iter(self.profiles.values()), self.pooled)
        return first.tz if first is not None else "UTC"

    @property
    def bucket_s(self) -> float:
        first = next(iter(self.profiles.values()), self.pooled)
        return first.bucket_s if first is not None else 1800.0

    def for_symbol(self, symbol: str) -> IntradayProfile:
        """The symbol's own profile; else the pooled shape (``pooled=True``); else flat."""
        own = self.profiles.get(symbol)
        if own is not None and not own.is_flat:
            return own
        return self.pooled if self.pooled is not None else IntradayProfile.flat()

    @classmethod
    def learn(cls, days: Mapping[str, Sequence[tuple[str, BookLike]]], *, bucket_s: float = 1800.0,
              side: str = "both", tz: str = "America/New_York", pool: bool = True) -> ProfileSet:
        """Learn one profile per symbol from its ``(date, book)`` days; pool them when ``pool``.

        Every symbol's days give its own profile (:meth:`IntradayProfile.learn`);
        the pooled shape is :meth:`IntradayProfile.pool` over the symbols that
        have at least one day (None without any, or when ``pool`` is False).
        """
        profiles = {
            sym: IntradayProfile.learn([b for _, b in pairs], bucket_s=bucket_s, side=side, tz=tz,
                                       symbols=(sym,), dates=[d for d, _ in pairs])
            for sym, pairs in days.items()
        }
        learned = [p for p in profiles.values() if not p.is_flat]
        return cls(profiles, IntradayProfile.pool(learned) if pool and learned else None, side)

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout of the module docstring."""
        return {"schema": SCHEMA, "tz": self.tz, "bucket_s": self.bucket_s, "side": self.side,
                "symbols": {s: p.to_dict() for s, p in self.profiles.items()},
                "pooled": self.pooled.to_dict() if self.pooled is not None else None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "profile") -> ProfileSet:
        """Parse :meth:`to_dict` output; raises ``ConfigError`` saying what is wrong."""
        if not isinstance(d, Mapping) or d.get("schema") != SCHEMA:
            got = d.get("schema") if isinstance(d, Mapping) else type(d).__name__
            raise ConfigError(f"{source}: not an intraday profile file (schema {got!r}, expected "
                              f"{SCHEMA!r}); make one with `mpc-agent profile --data DAY... --out FILE`")
        try:
            profiles = {str(s): IntradayProfile.from_dict(p) for s, p in d.get("symbols", {}).items()}
            pooled = IntradayProfile.from_dict(d["pooled"]) if d.get("pooled") else None
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"{source}: invalid profile ({exc})") from exc
        return cls(profiles, pooled, str(d.get("side", "both")))

    def save(self, path: str | Path) -> Path:
        """Write strict JSON (no NaN) to ``path``; return the path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
        return out

    @classmethod
    def load(cls, path: str | Path) -> ProfileSet:
        """Read a file written by :meth:`save` (``ConfigError`` when it is not one)."""
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, str(p))


def describe(profile: IntradayProfile) -> str:
    """One line saying where a profile comes from (for logs and reports)."""
    if profile.is_flat:
        return "flat (no history)"
    days = f"{profile.days} day(s)"
    if profile.dates:
        days += f" {profile.dates[0]}..{profile.dates[-1]}" if len(profile.dates) > 1 else f" {profile.dates[0]}"
    who = ", ".join(profile.symbols) or "unknown symbols"
    kind = "pooled shape of " if profile.pooled else ""
    width = profile.bucket_s / 60.0
    return f"{kind}{who}, {days}, {width:g}-min buckets, time of day in {profile.tz}"
