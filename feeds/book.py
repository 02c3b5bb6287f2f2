"""``BookBatch``: the canonical, columnar, in-memory form of MBP-N snapshots, and its one validator.

Every reader produces ``BookBatch`` objects and everything downstream (the
engine, the simulator, the fits) consumes them. One row is one book event
(add, cancel, modify, trade, fill, clear, none) with the book *after* the
event, best level first. An empty level is a NaN price (size 0); a level with
a price is present, whatever its size.

:func:`check_books` is the one book validator: the file readers (through
``validate()``), the wire codec (one message) and the batch wire decoder all
use it, so a book is judged by the same rules, in the same order, whatever
brought it. ``validate()`` says which rows are bad and why; ``clean()`` drops
them and counts the reasons, it never raises for a whole file. The reasons
are in ``feeds.reasons``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

from feeds.reasons import (
    CROSSED_BOOK,
    LEVELS_OUT_OF_ORDER,
    LOCKED_BOOK,
    NEGATIVE_SIZE,
    NON_FINITE,
    NON_POSITIVE_PRICE,
    TS_BACKWARDS,
)

BOOK_RULES: tuple[str, ...] = (
    NON_FINITE, NON_POSITIVE_PRICE, NEGATIVE_SIZE, LEVELS_OUT_OF_ORDER, CROSSED_BOOK, LOCKED_BOOK,
    NON_POSITIVE_PRICE, TS_BACKWARDS,
)
"""The reason of each rule of :func:`check_books`, in the order they apply (rule ``k`` is code ``k + 1``):

1. ``non_finite``: an infinite price, a NaN or infinite size, a size on a level without a
   price, a missing timestamp (int64 min);
2. ``non_positive_price``: a level price <= 0, a trade price <= 0;
3. ``negative_size``: a level or event size < 0;
4. ``levels_out_of_order``: bids not strictly descending or asks not strictly ascending away
   from the touch, or an empty level before a present one;
5. ``crossed_book``: best bid above best ask; 6. ``locked_book``: best bid equal to best ask;
7. ``non_positive_price``: a trade without a price;
8. ``ts_backwards`` (``validate()`` only): time below the running maximum of its symbol.
"""
RULE_TEXT: tuple[str, ...] = (
    "an infinite price, a NaN or infinite size, or a size on a level without a price",
    "level prices and a trade's price must be > 0",
    "sizes must be >= 0",
    "bids must strictly descend and asks strictly ascend, empty levels last",
    "best bid above best ask",
    "best bid equals best ask",
    "a trade needs a price",
    "ts_event below an earlier one of the same symbol",
)
"""A sentence for each rule of :data:`BOOK_RULES` (DLQ details)."""
_CODE_TEXT = np.array(["", *BOOK_RULES], dtype="<U24")
_TS_RULE = len(BOOK_RULES)
_MISSING_TS = np.iinfo(np.int64).min

ACTIONS = frozenset("ACMTFRN")
TRADE_ACTIONS = ("T",)


@dataclass(frozen=True, slots=True)
class Validation:
    """Per-row verdict: ``reason[i]`` is '' for a good row, else the first reason."""

    reason: npt.NDArray[np.str_]

    @property
    def bad(self) -> npt.NDArray[np.bool_]:
        return self.reason != ""

    def counts(self) -> dict[str, int]:
        """Number of rejected rows per reason (only reasons that occurred)."""
        values, counts = np.unique(self.reason[self.bad], return_counts=True)
        return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


@dataclass(frozen=True, slots=True, eq=False)
class BookBatch:
    """Columnar batch of MBP snapshots.

    Attributes
    ----------
    ts_event : int64 (n,)   venue time, ns since the epoch UTC
    ts_recv : int64 (n,) or None   receive time when the source has it
    symbol : str (n,)
    action : str (n,)       A/C/M/T/F/R/N
    side : str (n,)         A (ask), B (bid) or N
    price, size : float64 (n,)   the event's price and size (trade price/size for T)
    bid_px, bid_sz, ask_px, ask_sz : float64 (n, levels), best first
    """

    ts_event: npt.NDArray[np.int64]
    symbol: npt.NDArray[np.str_]
    action: npt.NDArray[np.str_]
    side: npt.NDArray[np.str_]
    price: npt.NDArray[np.float64]
    size: npt.NDArray[np.float64]
    bid_px: npt.NDArray[np.float64]
    bid_sz: npt.NDArray[np.float64]
    ask_px: npt.NDArray[np.float64]
    ask_sz: npt.NDArray[np.float64]
    ts_recv: npt.NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        n = len(self.ts_event)
        for f in ("symbol", "action", "side", "price", "size"):
            if len(getattr(self, f)) != n:
                raise ValueError(f"BookBatch.{f} has {len(getattr(self, f))} rows, expected {n}")
        shape = self.bid_px.shape
        if len(shape) != 2 or shape[0] != n:
            raise ValueError(f"BookBatch.bid_px must be (n, levels), got {shape} for n={n}")
        for f in ("bid_sz", "ask_px", "ask_sz"):
            if getattr(self, f).shape != shape:
                raise ValueError(f"BookBatch.{f} has shape {getattr(self, f).shape}, expected {shape}")
        if self.ts_recv is not None and len(self.ts_recv) != n:
            raise ValueError("BookBatch.ts_recv length differs from ts_event")

    # ------------------------------------------------------------------ shape
    def __len__(self) -> int:
        return len(self.ts_event)

    @property
    def levels(self) -> int:
        return int(self.bid_px.shape[1])

    @classmethod
    def empty(cls, levels: int = 10, with_ts_recv: bool = False) -> BookBatch:
        z = np.zeros((0, levels))
        return cls(
            ts_event=np.zeros(0, np.int64),
            symbol=np.zeros(0, "<U1"),
            action=np.zeros(0, "<U1"),
            side=np.zeros(0, "<U1"),
            price=np.zeros(0),
            size=np.zeros(0),
            bid_px=z,
            bid_sz=z.copy(),
            ask_px=z.copy(),
            ask_sz=z.copy(),
            ts_recv=np.zeros(0, np.int64) if with_ts_recv else None,
        )

    def take(self, index: Any) -> BookBatch:
        """Rows selected by a slice, a boolean mask or an integer index array (an int: that row)."""
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1 if index != -1 else None)
        return _derived({name: None if (v := getattr(self, name)) is None else v[index] for name in _COLUMNS})

    def __getitem__(self, index: Any) -> BookBatch:
        return self.take(index)

    @classmethod
    def concat(cls, batches: Iterable[BookBatch]) -> BookBatch:
        """Stack batches (same number of levels) in order."""
        items = [b for b in batches if b is not None]
        if not items:
            return cls.empty()
        if len(items) == 1:
            return items[0]
        levels = {b.levels for b in items}
        if len(levels) != 1:
            raise ValueError(f"cannot concatenate batches with different depths {sorted(levels)}")
        kw: dict[str, Any] = {}
        for name in _COLUMNS:
            vals = [getattr(b, name) for b in items]
            if name == "ts_recv" and any(v is None for v in vals):
                kw[name] = None
            else:
                kw[name] = np.concatenate(vals)
        return _derived(kw)

    # ----------------------------------------------------------- derived data
    def mid(self) -> npt.NDArray[np.float64]:
        """Mid price of the top of book (NaN when a side is empty)."""
        return 0.5 * (self.bid_px[:, 0] + self.ask_px[:, 0])

    def spread(self) -> npt.NDArray[np.float64]:
        return self.ask_px[:, 0] - self.bid_px[:, 0]

    def is_trade(self) -> npt.NDArray[np.bool_]:
        return np.isin(self.action, TRADE_ACTIONS)

    def symbols(self) -> list[str]:
        """Distinct symbols in order of first appearance."""
        _, first = np.unique(self.symbol, return_index=True)
        return [str(self.symbol[i]) for i in sorted(first)]

    def for_symbol(self, symbol: str) -> BookBatch:
        return self.take(self.symbol == symbol)

    # ------------------------------------------------------------- validation
    def validate(self, last_ts: Mapping[str, int] | None = None) -> Validation:
        """Say which rows are bad and why: :func:`check_books`, then time order.

        ``last_ts`` maps symbol -> latest ``ts_event`` seen before this batch
        (``latest_ts()`` of the previous chunks), so that chunked reading detects
        time going backwards across chunks. A row is ``ts_backwards`` when its
        time is below the running maximum of the earlier rows of its symbol, so
        the clean output is non-decreasing in time per symbol.
        """
        code = book_codes(self)
        if len(code):
            code[(code == 0) & self._ts_backwards(last_ts)] = _TS_RULE
        return Validation(_CODE_TEXT[code])

    def _ts_backwards(self, last_ts: Mapping[str, int] | None) -> npt.NDArray[np.bool_]:
        back = np.zeros(len(self), dtype=bool)
        for sym in np.unique(self.symbol):
            idx = np.flatnonzero(self.symbol == sym)
            ts = self.ts_event[idx]
            prev = np.empty_like(ts)
            prev[1:] = ts[:-1]
            prev[0] = (last_ts or {}).get(str(sym), np.iinfo(np.int64).min)
            # against the latest time seen so far, not just the previous row, so that
            # one future timestamp cannot let the clean output go backwards after it
            back[idx] = ts < np.maximum.accumulate(prev)
        return back

    def latest_ts(self) -> dict[str, int]:
        """Per symbol, the largest ``ts_event`` in the batch: the ``last_ts`` for the next chunk."""
        out: dict[str, int] = {}
        for sym in np.unique(self.symbol):
            out[str(sym)] = int(self.ts_event[self.symbol == sym].max())
        return out

    def clean(self, last_ts: Mapping[str, int] | None = None) -> tuple[BookBatch, dict[str, int]]:
        """Drop bad rows; return the good rows and the count of rejections per reason."""
        v = self.validate(last_ts)
        if not v.bad.any():
            return self, {}
        return self.take(~v.bad), v.counts()


_COLUMNS = tuple(f.name for f in fields(BookBatch))


def _derived(columns: dict[str, Any]) -> BookBatch:
    """A batch made from the columns of valid batches (rows taken or stacked alike), without
    ``__post_init__``'s shape checks: the engine takes a few slices of every step (~3x per
    decision) and the checks were a third of their cost."""
    out = object.__new__(BookBatch)
    for name in _COLUMNS:
        object.__setattr__(out, name, columns[name])
    return out


def book_codes(book: BookBatch) -> npt.NDArray[np.uint8]:
    """Rule code of every row of ``book`` (0: good, ``k``: rule ``BOOK_RULES[k - 1]``, the first
    that applies; time order is not looked at): :func:`check_books` on a batch."""
    return check_books(book.price, book.size, book.action, book.bid_px, book.bid_sz, book.ask_px,
                       book.ask_sz, book.ts_event)


def check_books(
    price: npt.NDArray[np.float64],
    size: npt.NDArray[np.float64],
    action: npt.NDArray[np.str_] | Sequence[str],
    bid_px: npt.NDArray[np.float64],
    bid_sz: npt.NDArray[np.float64],
    ask_px: npt.NDArray[np.float64],
    ask_sz: npt.NDArray[np.float64],
    ts_event: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.uint8]:
    """The one book validator: rules 1-7 of :data:`BOOK_RULES` over ``n`` rows.

    Parameters
    ----------
    price, size : (n,) the event's price (NaN: none) and size.
    action : (n,) event actions (``"T"`` is a trade).
    bid_px, bid_sz, ask_px, ask_sz : (n, levels), best first, NaN price for an empty level
        (``levels`` >= 1).
    ts_event : (n,) or None; int64 min marks a missing timestamp.

    Returns
    -------
    numpy.ndarray of uint8
        0 for a good row, else ``k`` for the first rule ``BOOK_RULES[k - 1]`` the row breaks.
    """
    n, levels = bid_px.shape
    trade = np.asarray(action) == "T"
    px = np.concatenate((bid_px, ask_px), axis=1)  # both sides at once: half the numpy calls
    sz = np.concatenate((bid_sz, ask_sz), axis=1)
    empty = np.isnan(px)
    # one row of flags per rule (NaN compares false: an empty level never breaks an order rule)
    flag = np.zeros((7, n), dtype=bool)
    flag[0] = (np.isinf(px) | ~np.isfinite(sz) | (empty & (sz != 0))).any(axis=1)
    flag[0] |= ~np.isfinite(size) | np.isinf(price)
    if ts_event is not None:
        flag[0] |= ts_event == _MISSING_TS
    flag[1] = (px <= 0).any(axis=1) | (trade & (price <= 0))
    flag[2] = (sz < 0).any(axis=1) | (size < 0)
    if levels > 1:
        away = np.concatenate((-bid_px, ask_px), axis=1)  # rises away from the touch on both sides
        wrong = (away[:, 1:] <= away[:, :-1]) | (empty[:, :-1] & ~empty[:, 1:])
        wrong[:, levels - 1] = False  # (last bid, first ask) is not a step
        flag[3] = wrong.any(axis=1)
    flag[4] = px[:, 0] > px[:, levels]
    flag[5] = px[:, 0] == px[:, levels]
    flag[6] = trade & np.isnan(price)
    first = flag.argmax(axis=0)
    return np.where(flag.any(axis=0), first + 1, 0).astype(np.uint8)


def pad_levels(rows: Sequence[Sequence[float]], fill: float, levels: int, *,
               lengths: npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.float64]:
    """Ragged rows (each at most ``levels`` long; ``lengths`` if already counted) -> (n, levels)
    array padded with ``fill``, by one scatter (no per-row loop)."""
    n = len(rows)
    lens = np.fromiter(map(len, rows), dtype=np.int64, count=n) if lengths is None else lengths
    total = int(lens.sum())
    if total == n * levels:  # every row full: no scatter
        return np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=total).reshape(n, levels)
    out = np.full((n, levels), fill, dtype=np.float64)
    if total:
        flat = np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=total)
        row = np.repeat(np.arange(n), lens)
        col = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
        out[row, col] = flat
    return out


def merge_rejections(total: dict[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """Add rejection counts in place and return ``total``."""
    for k, v in more.items():
        total[k] = total.get(k, 0) + int(v)
    return total
