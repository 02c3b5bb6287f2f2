"""Validation at the boundary: consumed records -> domain objects, bad ones -> DLQ copies.

:class:`Intake` turns one ``getmany`` result into an :class:`Inbound`: parent
orders and cancels, fills, and one time-ordered ``BookBatch`` of market data.
Every record is decoded with ``feeds.wire.codec.decode`` (schema, types, NaN/inf,
positive prices, ordered levels, bid < ask, size limit); market data rows then
pass ``BookBatch.validate`` with the last accepted ``ts_event`` per symbol, so
time going backwards across batches is caught too. A rejected record becomes a
DLQ copy (original bytes, ``error`` header = the stable reason) and is counted
(``mpc_agent_snapshots_rejected_total{reason}`` for market data,
``mpc_agent_messages_rejected_total{topic,reason}`` for the control topics).
Nothing here raises for a bad message.

Checks beyond the wire schema (with a wall ``clock``; none in event-time mode):

- ``ts_future``: a snapshot more than ``max_future_skew_ms`` ahead of the clock
  (it would otherwise become ``last_ts`` and reject every good row after it);
- ``parent_expired``: a parent order whose ``end`` has passed; ``ts_future``:
  one starting more than :data:`MAX_PARENT_LEAD_NS` ahead;
- ``too_many_periods``: ``(end - start) / period_s`` above ``max_parent_periods``
  (a hostile 1 ns period would allocate a plan of billions of slots);
- ``invalid_child_order_id``: a fill whose ``child_order_id`` is not
  ``{parent_id}:{n}``.

Fills for unknown or finished parents and parent orders whose id is already
known are found on the engine thread (:mod:`agent.live.engine_step`); the service
dead-letters them through :meth:`Intake.dead_letters` (reasons
:data:`UNKNOWN_PARENT`, :data:`PARENT_DONE`, :data:`DUPLICATE_PARENT`). A fill
repeating a ``fill_id`` is normal at-least-once redelivery: it is counted
(``mpc_agent_fills_duplicate_total``) and ignored, not dead-lettered.
An ``oversize`` record's DLQ copy keeps only the first :data:`DLQ_OVERSIZE_KEEP_BYTES`
bytes (so the copy itself fits the producer's size limit).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import pydantic

from agent.core.errors import DataError
from agent.core.model import Fill, ParentOrder
from agent.live.metrics import AgentMetrics
from agent.live.settings import TopicsSection
from feeds.book import BookBatch
from feeds.ports import OutRecord, Record, dead_letter
from feeds.wire import codec
from feeds.wire.messages import (
    INVALID_CHILD_ORDER_ID,
    INVALID_VALUE,
    MAX_LEVELS,
    OVERSIZE,
    Mbp10,
    ParentCancelMsg,
    ParentOrderMsg,
    WireMessage,
)

MD_SCHEMAS = frozenset({"mbp10.v1"})
PARENT_SCHEMAS = frozenset({"parent_order.v1", "parent_cancel.v1"})
FILL_SCHEMAS = frozenset({"fill.v1"})

TS_FUTURE = "ts_future"
PARENT_EXPIRED = "parent_expired"
TOO_MANY_PERIODS = "too_many_periods"
UNKNOWN_PARENT = "unknown_parent"
PARENT_DONE = "parent_done"
DUPLICATE_PARENT = "duplicate_parent"
MAX_PARENT_LEAD_NS = 7 * 86_400 * 1_000_000_000
"""A parent order may start at most a week ahead of the clock."""
DLQ_OVERSIZE_KEEP_BYTES = 4096


@dataclass
class Inbound:
    """One batch of validated input, in the order the engine applies it.

    ``control`` holds ``ParentOrder`` (new) or ``str`` (parent_id to cancel).
    """

    control: list[ParentOrder | str] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    control_records: list[Record | None] = field(default_factory=list)
    fill_records: list[Record | None] = field(default_factory=list)
    md: BookBatch | None = None
    dlq: list[OutRecord] = field(default_factory=list)
    records: int = 0
    flush: bool = False
    hold_md: bool = False
    """Hold the market data (parent-order or fill partitions behind: ``agent.live.engine_step``)."""

    @property
    def empty(self) -> bool:
        return not (self.control or self.fills or (self.md is not None and len(self.md)) or self.flush)


class Intake:
    """Decoder + validator with the per-symbol ``last_ts`` state (see the module docstring)."""

    def __init__(self, topics: TopicsSection, metrics: AgentMetrics, *, max_message_bytes: int = 1 << 20,
                 clock: Callable[[], int] | None = None, max_future_skew_ms: float = 5_000.0,
                 max_parent_periods: int = 100_000) -> None:
        self.topics, self.metrics = topics, metrics
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.max_future_skew_ns = int(max_future_skew_ms * 1e6)
        self.max_parent_periods = max_parent_periods
        self.last_ts: dict[str, int] = {}
        self.last_md_monotonic = time.monotonic()

    # ------------------------------------------------------------- public
    def take(self, records: Mapping[str, Sequence[Record]], extra_md: BookBatch | None = None) -> Inbound:
        """Decode and validate ``records`` (by topic) plus optional already-parsed market data."""
        inb = Inbound(records=sum(len(v) for v in records.values()))
        for rec in records.get(self.topics.parent_orders, ()):
            item = self._parent(rec, inb.dlq)
            if item is not None:
                inb.control.append(item)
                inb.control_records.append(rec)
        for rec in records.get(self.topics.fills, ()):
            msg = self._decode(rec, FILL_SCHEMAS, inb.dlq)
            if msg is None:
                continue
            if not msg.child_order_id.startswith(msg.parent_id + ":"):
                self._reject(rec, INVALID_CHILD_ORDER_ID,
                             "child_order_id must be '{parent_id}:{period_index}' of the fill's parent", inb.dlq)
                continue
            inb.fills.append(codec.fill_to_model(msg))
            inb.fill_records.append(rec)
        md, recs = self._books(records.get(self.topics.md, ()), inb.dlq)
        if extra_md is not None and len(extra_md):
            md = extra_md if md is None else BookBatch.concat([extra_md, md])
            recs = None
        if md is not None and len(md):
            inb.md = self.validate_rows(md, recs, inb.dlq)
        return inb

    def validate_rows(self, md: BookBatch, recs: Sequence[Record] | None, dlq: list[OutRecord]) -> BookBatch:
        """Drop rows ahead of the clock (``ts_future``) and rows ``BookBatch.validate`` refuses
        (DLQ copies when ``recs`` maps rows to records)."""
        if self.clock is not None and self.max_future_skew_ns > 0 and len(md):
            future = md.ts_event > self.clock() + self.max_future_skew_ns
            if future.any():
                idx = np.flatnonzero(future).tolist()
                self.metrics.reject(TS_FUTURE, len(idx))
                if recs is not None:
                    for i in idx:
                        dlq.append(dead_letter(recs[i], TS_FUTURE, f"{TS_FUTURE}: ts_event more than "
                                               f"{self.max_future_skew_ns / 1e6:g} ms ahead of the clock",
                                               self.topics.dlq))
                    recs = [r for r, f in zip(recs, future.tolist(), strict=True) if not f]
                md = md.take(~future)
                if not len(md):
                    return md
        v = md.validate(self.last_ts)
        if v.bad.any():
            for i in np.flatnonzero(v.bad).tolist():
                reason = str(v.reason[i])
                self.metrics.reject(reason)
                if recs is not None:
                    dlq.append(dead_letter(recs[i], reason, f"{reason}: rejected by BookBatch.validate",
                                           self.topics.dlq))
            md = md.take(~v.bad)
        if len(md):
            for sym, ts in md.latest_ts().items():
                self.last_ts[sym] = max(ts, self.last_ts.get(sym, ts))
            self.metrics.snapshots.inc(len(md))
            if self.clock is not None:
                age_s = (self.clock() - int(md.ts_event.max())) / 1e9
                self.metrics.snapshot_age.observe(max(0.0, age_s))
            self.last_md_monotonic = time.monotonic()
        return md

    def dead_letters(self, inb: Inbound, rejected: Sequence[tuple[str, int, str]]) -> list[OutRecord]:
        """DLQ copies (and counts) of items the engine thread refused.

        ``rejected`` holds ``(kind, index, reason)`` with ``kind`` ``"control"`` or ``"fill"``
        and ``index`` into ``inb.control`` / ``inb.fills``; items without a record (parent
        orders from config) are counted only.
        """
        out: list[OutRecord] = []
        for kind, i, reason in rejected:
            recs = inb.control_records if kind == "control" else inb.fill_records
            rec = recs[i] if i < len(recs) else None
            if rec is not None:
                self._reject(rec, reason, f"{reason}: refused by the engine", out)
        return out

    # ----------------------------------------------------------- internals
    def _reject(self, rec: Record, reason: str, detail: str, dlq: list[OutRecord]) -> None:
        md = rec.topic == self.topics.md
        out = dead_letter(rec, reason, detail, self.topics.dlq if md else f"{rec.topic}.dlq")
        if reason == OVERSIZE and out.value is not None and len(out.value) > DLQ_OVERSIZE_KEEP_BYTES:
            out = dataclasses.replace(out, value=out.value[:DLQ_OVERSIZE_KEEP_BYTES], headers=(
                *out.headers, ("error.original_bytes", str(len(out.value)).encode())))
        dlq.append(out)
        if md:
            self.metrics.reject(reason)
        else:
            self.metrics.messages_rejected.labels(topic=rec.topic, reason=reason).inc()

    def _decode(self, rec: Record, expected: frozenset[str], dlq: list[OutRecord]) -> Any | None:
        try:
            return codec.decode(rec.value, expected=expected, max_bytes=self.max_message_bytes)
        except DataError as exc:
            self._reject(rec, str(getattr(exc, "reason", "invalid_value")), str(exc), dlq)
            return None

    def _parent(self, rec: Record, dlq: list[OutRecord]) -> ParentOrder | str | None:
        msg = self._decode(rec, PARENT_SCHEMAS, dlq)
        if isinstance(msg, ParentCancelMsg):
            return msg.parent_id
        if isinstance(msg, ParentOrderMsg):
            try:
                parent = codec.parent_to_model(msg)
            except (DataError, ValueError) as exc:
                self._reject(rec, str(getattr(exc, "reason", "invalid_value")), str(exc), dlq)
                return None
            problem = self._parent_problem(parent)
            if problem is None:
                return parent
            self._reject(rec, problem[0], problem[1], dlq)
        return None

    def _parent_problem(self, p: ParentOrder) -> tuple[str, str] | None:
        """``(reason, detail)`` when a schema-valid parent order cannot be worked, else None."""
        if not 1e-3 <= p.period_s <= 86_400 * 366:
            return INVALID_VALUE, f"{INVALID_VALUE}: period_s must be in [1 ms, 1 year]"
        if (p.end_ns - p.start_ns) / p.period_ns > self.max_parent_periods:
            return TOO_MANY_PERIODS, f"{TOO_MANY_PERIODS}: more than {self.max_parent_periods} periods"
        if self.clock is not None:
            now = self.clock()
            if p.end_ns <= now:
                return PARENT_EXPIRED, f"{PARENT_EXPIRED}: end is in the past"
            if p.start_ns > now + MAX_PARENT_LEAD_NS:
                return TS_FUTURE, f"{TS_FUTURE}: start more than 7 days ahead"
        return None

    def _books(self, recs: Sequence[Record], dlq: list[OutRecord]) -> tuple[BookBatch | None, list[Record] | None]:
        """``mbp10.v1`` records -> BookBatch (see :func:`_fast_book_checks` for the fast path)."""
        msgs: list[Any] = []
        kept: list[Record] = []
        for rec in recs:
            v = rec.value
            msg: Any = None
            if v is not None and len(v) <= self.max_message_bytes:
                try:
                    msg = _MBP10_FIELDS_ONLY.model_validate_json(v)
                except pydantic.ValidationError:
                    msg = None
            if msg is None:  # the exact codec path gives the reason (or accepts it)
                msg = self._decode(rec, MD_SCHEMAS, dlq)
            if msg is not None:
                msgs.append(msg)
                kept.append(rec)
        if not msgs:
            return None, None
        lengths = np.array([(len(m.bid_px), len(m.bid_sz), len(m.ask_px), len(m.ask_sz)) for m in msgs],
                           dtype=np.int64).reshape(-1, 4)
        shape_ok = (lengths[:, 0] == lengths[:, 1]) & (lengths[:, 2] == lengths[:, 3]) & (lengths <= MAX_LEVELS).all(1)
        if not shape_ok.all():
            msgs, kept, lengths = self._recheck(msgs, kept, lengths, ~shape_ok, dlq)
            if not msgs:
                return None, None
        batch = codec.books_to_batch(msgs)
        bad = _fast_book_checks(batch, lengths[:, 0], lengths[:, 2])
        if bad.any():
            keep = self._recheck_mask(kept, bad, dlq)
            batch = batch.take(keep)
            kept = [r for r, k in zip(kept, keep.tolist(), strict=True) if k]
        # offset order is kept: per symbol (one partition, key = symbol) time must not go
        # backwards, and a row that does is rejected by validate(), never silently re-sorted
        return (batch, kept) if len(kept) else (None, None)

    def _recheck_mask(self, kept: Sequence[Record], bad: npt.NDArray[np.bool_], dlq: list[OutRecord]) -> npt.NDArray[np.bool_]:
        """Rows the vectorised checks flagged go through ``codec.decode``: DLQ with its reason."""
        keep = ~bad
        for i in np.flatnonzero(bad).tolist():
            keep[i] = self._decode(kept[i], MD_SCHEMAS, dlq) is not None
        return keep

    def _recheck(self, msgs: list[Any], kept: list[Record], lengths: npt.NDArray[np.int64],
                 bad: npt.NDArray[np.bool_], dlq: list[OutRecord]) -> tuple[list[Any], list[Record], npt.NDArray[np.int64]]:
        keep = self._recheck_mask(kept, bad, dlq)
        idx = np.flatnonzero(keep).tolist()
        return [msgs[i] for i in idx], [kept[i] for i in idx], lengths[keep]


def _fields_only_model() -> type[pydantic.BaseModel]:
    """``Mbp10`` with every field check (types, strictness, NaN/inf, timestamps, ids, literals,
    extra fields, a *required* schema tag) but without its per-message ``_book`` validator, whose
    checks :func:`_fast_book_checks` repeats vectorised over the batch."""
    fields: dict[str, Any] = {}
    for name, f in Mbp10.model_fields.items():
        ann: Any = f.annotation
        if f.metadata:
            ann = Annotated[(ann, *f.metadata)]
        fields[name] = (Literal["mbp10.v1"], pydantic.Field(alias="schema")) if name == "schema_" else (ann, f)
    model: type[pydantic.BaseModel] = pydantic.create_model(
        "Mbp10FieldsOnly", __base__=WireMessage, **fields)
    return model


_MBP10_FIELDS_ONLY = _fields_only_model()


def _fast_book_checks(b: BookBatch, n_bid: npt.NDArray[np.int64], n_ask: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Rows breaking a rule of ``Mbp10._book`` on the padded arrays (``n_*`` = levels sent).

    Non-positive level price, negative level size, levels not strictly monotone
    away from the touch, crossed or locked top, a trade without a price.
    Flagged rows are re-decoded by ``codec.decode`` for the exact reason, so the
    result is the codec's verdict row by row; unflagged rows pass every check.
    """
    cols = np.arange(b.bid_px.shape[1])
    pb, pa = cols[None, :] < n_bid[:, None], cols[None, :] < n_ask[:, None]
    with np.errstate(invalid="ignore"):
        bad = ((b.bid_px <= 0) & pb).any(1) | ((b.ask_px <= 0) & pa).any(1)
        bad |= ((b.bid_sz < 0) & pb).any(1) | ((b.ask_sz < 0) & pa).any(1)
        bad |= ((b.bid_px[:, 1:] >= b.bid_px[:, :-1]) & pb[:, 1:]).any(1)
        bad |= ((b.ask_px[:, 1:] <= b.ask_px[:, :-1]) & pa[:, 1:]).any(1)
        both = (n_bid > 0) & (n_ask > 0)
        bad |= both & (b.bid_px[:, 0] >= b.ask_px[:, 0])
    bad |= (b.action == "T") & np.isnan(b.price)
    return np.asarray(bad, dtype=bool)
