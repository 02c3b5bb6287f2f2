"""Trading days and wall-clock windows for the replay command.

The replay's ``--start/--end`` are wall-clock times (``HH:MM``) in the
exchange's time zone (``--tz``, default America/New_York) on the data's
trading day. Rows are grouped into trading days by their local date; the
last day is the one replayed, earlier days are history (VWAP profile,
intraday profile), so nothing is learned from the future of the replayed day
when several days are given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from agent.core.model import NS_PER_S
from feeds.book import BookBatch

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "sample.mbp10.csv.zst"
"""The embedded sample day (used when no --data is given)."""


@dataclass(frozen=True)
class TradingDays:
    """One symbol's data split by local trading date (oldest first)."""

    dates: list[date]
    books: list[BookBatch]
    tz: ZoneInfo

    @property
    def day(self) -> date:
        return self.dates[-1]

    @property
    def book(self) -> BookBatch:
        """The replayed (last) day."""
        return self.books[-1]

    @property
    def history(self) -> list[BookBatch]:
        return self.books[:-1]


def local_dates(ts_ns: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """Local calendar date (as days since the epoch) of each timestamp.

    The UTC offset is taken per row from the zone (exact across DST changes).
    """
    ts = np.asarray(ts_ns, np.int64)
    if ts.size == 0:
        return np.zeros(0, np.int64)
    day_ns = 86_400 * NS_PER_S
    utc_days = np.unique(ts // day_ns)
    offsets = {int(d): _offset_ns(int(d), tz) for d in utc_days}
    off = np.array([offsets[int(d)] for d in utc_days], np.int64)
    per_row = off[np.searchsorted(utc_days, ts // day_ns)]
    return (ts + per_row) // day_ns


def _offset_ns(utc_day: int, tz: ZoneInfo) -> int:
    noon = datetime.fromtimestamp(utc_day * 86_400 + 43_200, tz)
    off = noon.utcoffset()
    return int((off or timedelta(0)).total_seconds()) * NS_PER_S


def split_days(book: BookBatch, tz: str | ZoneInfo = "America/New_York") -> TradingDays:
    """Group ``book`` (one symbol) by local trading date."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    if len(book) == 0:
        raise ValueError("no rows to replay")
    d = local_dates(book.ts_event, zone)
    values, first = np.unique(d, return_index=True)
    bounds = [*first.tolist(), len(book)]
    order = np.argsort(first)
    books = [book[bounds[i]:bounds[i + 1]] for i in range(len(values))]
    dates = [date(1970, 1, 1) + timedelta(days=int(v)) for v in values]
    return TradingDays([dates[i] for i in order], [books[i] for i in order], zone)


def wall_clock_ns(day: date, hhmm: str, tz: ZoneInfo) -> int:
    """``HH:MM`` (or ``HH:MM:SS``) on ``day`` in ``tz`` as ns since the epoch UTC."""
    try:
        parts = [int(p) for p in hhmm.split(":")]
        if not 2 <= len(parts) <= 3:
            raise ValueError(hhmm)
        t = time(parts[0], parts[1], parts[2] if len(parts) == 3 else 0)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"time {hhmm!r} is not HH:MM (e.g. 10:00)") from exc
    return int(datetime.combine(day, t, tz).timestamp()) * NS_PER_S


def session_bounds(book: BookBatch, period_s: float = 60.0) -> tuple[int, int]:
    """(start, end) of the data: first event floored, last event ceiled, to the minute."""
    minute = 60 * NS_PER_S
    ts = book.ts_event
    return int(ts[0]) // minute * minute, -(-(int(ts[-1]) + 1) // minute) * minute


def resolve_window(days: TradingDays, start: str | None, end: str | None) -> tuple[int, int, int, int]:
    """(start_ns, end_ns, session_start_ns, session_end_ns) on the replayed day.

    Missing ``start``/``end`` default to the session present in the data.
    """
    s0, s1 = session_bounds(days.book)
    a = wall_clock_ns(days.day, start, days.tz) if start else s0
    b = wall_clock_ns(days.day, end, days.tz) if end else s1
    if b <= a:
        raise ValueError(f"--end ({end}) must be after --start ({start})")
    if b <= s0 or a >= s1:
        raise ValueError("the window does not overlap the data's session "
                         f"({datetime.fromtimestamp(s0 // NS_PER_S, days.tz):%H:%M}-"
                         f"{datetime.fromtimestamp(s1 // NS_PER_S, days.tz):%H:%M} {days.tz.key})")
    return a, b, s0, s1


def local_time(iso_utc: str, tz: str, fmt: str = "%H:%M") -> str:
    """An ISO-8601 UTC time (``...Z``, as in ``summary.json``) as wall-clock text in ``tz``."""
    t = datetime.strptime(iso_utc[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=ZoneInfo("UTC"))
    return t.astimezone(ZoneInfo(tz)).strftime(fmt)
