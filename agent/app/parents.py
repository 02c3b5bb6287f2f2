"""Parent orders given by config or flags: ``[parent]`` -> :class:`agent.core.model.ParentOrder`.

Times (``[parent] start/end``) accept ISO-8601, integer ns, or ``HH:MM`` in
``parent.tz`` on the data's trading day (today without data).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.app.config import ParentSection
from agent.core.errors import ConfigError, DataError
from agent.core.model import ParentOrder


def parse_time_ns(text: str, tz: str, day: dt.date) -> int:
    """ISO-8601, integer ns, or ``HH:MM[:SS]`` in ``tz`` on ``day`` -> ns since the epoch (UTC)."""
    from feeds.wire.messages import parse_iso_ns

    s = text.strip()
    if s.isdigit():
        return int(s)
    if len(s) <= 8 and ":" in s:
        parts = [int(x) for x in s.split(":")] + [0, 0]
        t = dt.time(parts[0], parts[1], parts[2])
        local = dt.datetime.combine(day, t, tzinfo=ZoneInfo(tz))
        return int(local.timestamp()) * 1_000_000_000
    try:
        return parse_iso_ns(s)
    except Exception as exc:
        raise ConfigError(f"cannot parse time {text!r}: use ISO-8601, integer ns or HH:MM") from exc


def parent_from_config(p: ParentSection, *, first_ts_ns: int | None, default_symbol: str | None) -> ParentOrder | None:
    """The parent order of ``[parent]`` (a JSON file or the inline fields); None when not configured."""
    from feeds.wire import codec

    if p.json_path:
        raw = json.loads(Path(p.json_path).read_text())
        raw.setdefault("schema", "parent_order.v1")
        try:
            msg = codec.decode(json.dumps(raw).encode(), expected={"parent_order.v1"})
            return codec.parent_to_model(msg, lot_size=p.lot_shares)  # type: ignore[arg-type]
        except DataError as exc:
            raise ConfigError(f"parent order file {p.json_path}: {exc}") from None
    if p.quantity_shares <= 0:
        return None
    symbol = p.symbol or default_symbol
    if not symbol or not p.start or not p.end:
        raise ConfigError("a parent order from flags/config needs symbol (or data), start and end")
    tz = ZoneInfo(p.tz)
    day = (dt.datetime.fromtimestamp(first_ts_ns / 1e9, tz) if first_ts_ns else dt.datetime.now(tz)).date()
    try:
        return ParentOrder(
            p.parent_id, symbol, p.side, p.quantity_shares, parse_time_ns(p.start, p.tz, day),
            parse_time_ns(p.end, p.tz, day), period_s=p.period_s, max_participation=p.max_participation_frac,
            risk_aversion=p.risk_aversion, limit_price=p.limit_price_usd, lot_size=p.lot_shares,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid parent order: {exc}") from None
