"""Trading days and wall-clock windows for the replay, fit and profile commands.

The replay's ``--start/--end`` are wall-clock times (``HH:MM``) in the
exchange's time zone (``--tz``, default America/New_York) on the data's
trading day. Rows are grouped into trading days by their local date; the
last day is the one replayed, earlier days are history (VWAP profile,
intraday profile), so nothing is learned from the future of the replayed day
when several days are given.

:func:`read_days` reads any number of files, each holding one or several
days of one or several symbols, and returns every symbol's days in date
order (a symbol's day found in two files is an error, not a silent merge).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from agent.core.errors import DataError
from agent.core.model import NS_PER_S
from feeds.book import BookBatch, merge_rejections

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"
"""The embedded sample: one generated file per trading day (see its README)."""
SAMPLE_FILES: tuple[Path, ...] = tuple(sorted(SAMPLE_DIR.glob("sample-*.mbp10.csv.zst")))
"""The sample's days, oldest first (used when no --data is given)."""
SAMPLE: Path = SAMPLE_FILES[-1] if SAMPLE_FILES else SAMPLE_DIR / "missing"
"""The sample's last day alone (one file); ``SAMPLE_FILES`` holds the history too."""
SAMPLE_DATES: tuple[date, ...] = tuple(date.fromisoformat(p.name[len("sample-"):][:10])
                                      for p in SAMPLE_FILES)
"""The trading day of each file of ``SAMPLE_FILES``."""


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
        """Every day before the replayed one."""
        return self.books[:-1]

    @property
    def history_dates(self) -> list[date]:
        return self.dates[:-1]

    def before(self, day: date) -> TradingDays:
        """Only the days strictly before ``day`` (may be empty: ``dates == []``)."""
        keep = [i for i, d in enumerate(self.dates) if d < day]
        return TradingDays([self.dates[i] for i in keep], [self.books[i] for i in keep], self.tz)


@dataclass(frozen=True)
class DayData:
    """Every symbol's trading days read from some files (see :func:`read_days`)."""

    by_symbol: dict[str, TradingDays]
    files: list[str] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def symbols(self) -> list[str]:
        """Symbols in order of first appearance in the files."""
        return list(self.by_symbol)


def read_days(paths: Sequence[str | Path], fmt: str = "auto", *, symbol: str | None = None,
              tz: str | ZoneInfo = "America/New_York") -> DayData:
    """Read ``paths`` (files or directories) file by file and split every symbol into days.

    Files may come in any order and hold several days and symbols; each
    symbol's days are returned oldest first. Raises ``DataError`` when the
    same symbol and local date appear in two files, or when nothing is left.
    """
    from feeds.files.readers import expand_paths, read_book

    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    found: dict[str, dict[date, tuple[BookBatch, str]]] = {}
    files: list[str] = []
    rejected: dict[str, int] = {}
    for path in expand_paths(list(paths)):
        res = read_book(path, fmt, symbol=symbol)
        files.extend(res.files)
        merge_rejections(rejected, res.rejected)
        for sym in res.batch.symbols() if len(res.batch) else []:
            days = split_days(res.batch.for_symbol(sym), zone)
            seen = found.setdefault(sym, {})
            for d, book in zip(days.dates, days.books, strict=True):
                if d in seen:
                    raise DataError(f"{sym} {d} is in both {seen[d][1]} and {path}; pass each day once")
                seen[d] = (book, str(path))
    if not found:
        where = ", ".join(map(str, paths))
        raise DataError(f"no valid rows for symbol {symbol!r} in {where}" if symbol
                        else f"no valid rows in {where}")
    by_symbol = {sym: TradingDays(sorted(days), [days[d][0] for d in sorted(days)], zone)
                 for sym, days in found.items()}
    return DayData(by_symbol, files, rejected)


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
