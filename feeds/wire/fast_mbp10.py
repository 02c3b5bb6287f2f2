"""Batch decoder of ``mbp10.v1``: record values -> ``BookBatch`` columns at the speed of the wire.

:func:`decode_books` gives, value by value, the verdict of the strict codec
(``feeds.wire.codec.decode(value, expected={"mbp10.v1"})``): the same values
accepted, the same reason for every rejected one, and for the accepted ones
the columns ``codec.books_to_batch`` would build. It gets there without a
pydantic model per message:

1. a value that is plain (bytes, within the size limit, ASCII, no backslash
   escape) is parsed by one typed ``msgspec`` decoder whose fields, types and
   bounds are those of ``feeds.wire.messages.Mbp10`` (strict: no bool or string
   as a number, no float as an int, no unknown field, the schema tag required);
2. the few checks ``msgspec`` cannot express (identifiers without blanks,
   level list shapes) run over the batch, and the book rules run vectorised
   over the padded columns: ``feeds.book.check_books``, the validator the codec
   itself applies to one message, so a book rejected here gets the codec's
   reason;
3. every value step 1 or 2 cannot decide (not plain, a parse or type error, a
   blank in a symbol, mismatched or too many levels) goes through the strict
   codec, which says exactly why (or accepts it: the fast path never rejects
   on its own account what it does not fully understand).

The common valid message therefore costs one C parse and a share of a few
numpy passes; hostile ones cost what the strict codec costs. The equality
with the codec is the subject of ``tests/unit/feeds/test_fast_mbp10.py``
(hostile generators, hypothesis, every reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress, repeat
from operator import attrgetter, contains
from typing import Annotated, Any, Literal, cast

import msgspec
import numpy as np
import numpy.typing as npt

from agent.core.errors import DataError
from feeds.book import BOOK_RULES, RULE_TEXT, BookBatch, check_books, pad_levels
from feeds.wire import codec
from feeds.wire.messages import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_LEVELS,
    TIMESTAMP_MAX,
    BookAction,
    BookSide,
    Mbp10,
    valid_text,
)

_EXPECTED = frozenset({Mbp10.SCHEMA})
_JOIN_LIMIT = 1 << 24
_Ts = Annotated[int, msgspec.Meta(ge=0, le=TIMESTAMP_MAX)]


class WireBook(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    """``mbp10.v1`` as ``msgspec`` parses it: :class:`feeds.wire.messages.Mbp10`'s fields, types
    and bounds, with ``schema`` required (the codec refuses a value without it before the model).

    Levels are tuples, not lists as in the model: a tuple of floats drops out of the garbage
    collector's sight at its first pass, a list stays (in an agent with a large heap, lists
    cost ~20% more through collections). ``gc=False``: the fields hold no container that
    could make a cycle.
    """

    schema: Literal["mbp10.v1"]
    symbol: str
    ts_event: _Ts
    ts_recv: _Ts | None = None
    sequence: Annotated[int, msgspec.Meta(ge=0)] | None = None
    action: BookAction
    side: BookSide
    price: Annotated[float, msgspec.Meta(gt=0)] | None = None
    size: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    bid_px: tuple[float, ...] = ()
    bid_sz: tuple[float, ...] = ()
    ask_px: tuple[float, ...] = ()
    ask_sz: tuple[float, ...] = ()


_PARSE = msgspec.json.Decoder(WireBook).decode
_COLUMNS = ("ts_event", "ts_recv", "symbol", "action", "side", "price", "size",
            "bid_px", "bid_sz", "ask_px", "ask_sz")
_GET = attrgetter(*_COLUMNS)  # a WireBook and an Mbp10 share these attribute names


@dataclass(frozen=True, slots=True)
class Rejected:
    """One value refused: its position in the input, the codec's reason, a sentence."""

    index: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class DecodedBooks:
    """What :func:`decode_books` made of a batch of values.

    Attributes
    ----------
    books : the accepted values, in input order (levels padded to ``MAX_LEVELS``).
    index : int64 (len(books),) the input position of each row of ``books``.
    rejected : the refused values, in input order.
    strict : how many values the strict codec had to decide (none when all were plain and valid).
    """

    books: BookBatch
    index: npt.NDArray[np.int64]
    rejected: list[Rejected]
    strict: int


def decode_books(values: Sequence[bytes | None], *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> DecodedBooks:
    """Decode ``mbp10.v1`` record values into one ``BookBatch``, refusing bad ones with the codec's reason.

    Parameters
    ----------
    values : Kafka record values (None: a tombstone).
    max_bytes : the size limit (``oversize`` above it), as ``codec.decode``'s.

    Returns
    -------
    DecodedBooks
        Accepted rows (input order) with their input positions, and the rejections. Never raises
        for a bad value.
    """
    rejected: list[Rejected] = []
    rows, where, strict = _parse_all(values, max_bytes)
    if rows is None:
        rows, where, strict = _parse_each(values, max_bytes, rejected)
    books, index = BookBatch.empty(MAX_LEVELS), np.zeros(0, np.int64)
    cols = _Columns(rows) if rows else None
    suspect = cols.suspects() if cols is not None else []
    if suspect:
        strict += len(suspect)
        rows, where = _redecide(values, max_bytes, rows, where, suspect, rejected)
        cols = _Columns(rows) if rows else None
    if cols is not None:
        books, index = cols.books(np.asarray(where, dtype=np.int64), rejected)
    rejected.sort(key=lambda r: r.index)
    return DecodedBooks(books, index, rejected, strict)


def _plain(value: bytes) -> bool:
    """ASCII without a backslash: no escape, no multi-byte character, nothing for two JSON
    parsers to read differently."""
    return value.isascii() and b"\\" not in value


def _all_plain(raw: Sequence[bytes]) -> bool:
    """Every value plain: checked on their concatenation (one C pass) unless that would copy
    more than :data:`_JOIN_LIMIT` bytes, then value by value (still C loops)."""
    if sum(map(len, raw)) <= _JOIN_LIMIT:
        return _plain(b"".join(raw))
    return all(map(bytes.isascii, raw)) and not any(map(contains, raw, repeat(b"\\")))


def _parse_all(values: Sequence[bytes | None], max_bytes: int) -> tuple[list[Any] | None, Any, int]:
    """The common case in C loops: every value plain, within the limit, and parsed; else None."""
    raw = cast(Sequence[bytes], values)  # a None (or a bytearray) makes len() or isascii raise: caught below
    try:
        if not raw or max(map(len, raw)) > max_bytes or not _all_plain(raw):
            return None, None, 0
        rows = list(map(_PARSE, raw))
    except Exception:  # a tombstone, a value of another type, a value the parser refuses
        return None, None, 0
    return rows, np.arange(len(rows)), 0


def _parse_each(values: Sequence[bytes | None], max_bytes: int,
                rejected: list[Rejected]) -> tuple[list[Any], list[int], int]:
    """Value by value: plain ones parsed, the others (and those the parser refuses) to the strict codec."""
    rows: list[Any] = []
    where: list[int] = []
    strict = 0
    for i, v in enumerate(values):
        if type(v) is bytes and len(v) <= max_bytes and _plain(v):
            try:
                rows.append(_PARSE(v))
                where.append(i)
                continue
            except Exception:  # what the parser refuses, the strict codec judges
                pass
        strict += 1
        _strict(i, v, max_bytes, rows, where, rejected)
    return rows, where, strict


def _strict(i: int, value: bytes | None, max_bytes: int, rows: list[Any], where: list[int],
            rejected: list[Rejected]) -> None:
    """The strict codec's verdict on value ``i``: a row, or a rejection with its reason."""
    try:
        rows.append(codec.decode(value, expected=_EXPECTED, max_bytes=max_bytes))
        where.append(i)
    except DataError as exc:
        rejected.append(Rejected(i, str(getattr(exc, "reason", "invalid_value")), str(exc)))


@lru_cache(maxsize=4096)
def _valid_symbol(symbol: str) -> bool:
    return valid_text(symbol)


def _redecide(values: Sequence[bytes | None], max_bytes: int, rows: list[Any], where: Sequence[int],
              suspect: list[int], rejected: list[Rejected]) -> tuple[list[Any], list[int]]:
    """Send the ``suspect`` rows to the strict codec; keep the others (and any it accepts)."""
    where = [int(w) for w in where]
    drop = set(suspect)
    kept = [r for k, r in enumerate(rows) if k not in drop]
    kept_at = [w for k, w in enumerate(where) if k not in drop]
    again: list[Any] = []
    again_at: list[int] = []
    for k in suspect:
        _strict(where[k], values[where[k]], max_bytes, again, again_at, rejected)
    if not again:
        return kept, kept_at
    order = sorted(range(len(kept) + len(again)), key=(kept_at + again_at).__getitem__)
    both, both_at = kept + again, kept_at + again_at
    return [both[k] for k in order], [both_at[k] for k in order]


class _Columns:
    """The fields of parsed rows as columns (one pass), then the ``BookBatch``."""

    def __init__(self, rows: list[Any]) -> None:
        (self.ts_event, self.ts_recv, self.symbol, self.action, self.side, self.price, self.size,
         *self.levels) = zip(*map(_GET, rows), strict=True)
        n = len(rows)
        self.lens = [np.fromiter(map(len, c), dtype=np.int64, count=n) for c in self.levels]

    def suspects(self) -> list[int]:
        """Rows the parser let through that the codec refuses before its book rules: a symbol
        with blanks (or empty, or too long), level lists of different lengths or too long."""
        nbp, nbs, nap, nas = self.lens
        bad = (nbp != nbs) | (nap != nas) | (nbp > MAX_LEVELS) | (nap > MAX_LEVELS)
        wrong = {s for s in set(self.symbol) if not _valid_symbol(s)}
        if wrong:
            bad |= np.fromiter((s in wrong for s in self.symbol), dtype=bool, count=len(bad))
        return np.flatnonzero(bad).tolist()

    def books(self, index: npt.NDArray[np.int64], rejected: list[Rejected]) -> tuple[BookBatch, npt.NDArray[np.int64]]:
        """The ``BookBatch`` of the rows ``feeds.book.check_books`` accepts (the others become
        rejections with its reason) and their input positions."""
        bpx, bsz, apx, asz = (pad_levels(c, fill, MAX_LEVELS, lengths=n)
                              for c, fill, n in zip(self.levels, (np.nan, 0.0, np.nan, 0.0), self.lens, strict=True))
        price = np.array(self.price, dtype=np.float64)  # None -> NaN
        size = np.array(self.size, dtype=np.float64)
        action = np.array(self.action, dtype="<U1")
        code = check_books(price, size, action, bpx, bsz, apx, asz)
        good: Any = slice(None)
        recv = self.ts_recv
        if code.any():
            bad = code != 0
            for k in np.flatnonzero(bad).tolist():
                rule = int(code[k]) - 1
                rejected.append(Rejected(int(index[k]), BOOK_RULES[rule],
                                         str(codec.rejection(BOOK_RULES[rule], RULE_TEXT[rule]))))
            if bad.all():
                return BookBatch.empty(MAX_LEVELS), index[:0]
            good = ~bad
            recv = tuple(compress(recv, good.tolist()))
        book = BookBatch(
            ts_event=np.array(self.ts_event, dtype=np.int64)[good],
            symbol=np.array(self.symbol, dtype=np.str_)[good],
            action=action[good],
            side=np.array(self.side, dtype="<U1")[good],
            price=price[good], size=size[good],
            bid_px=bpx[good], bid_sz=bsz[good], ask_px=apx[good], ask_sz=asz[good],
            ts_recv=None if None in recv else np.array(recv, dtype=np.int64),  # kept when every row has it
        )
        return book, index[good]
