"""Validation at the boundary: consumed records -> domain objects, bad ones -> DLQ copies.

:class:`Intake` turns one ``getmany`` result into an :class:`Inbound`: parent
orders and cancels, fills, and one time-ordered ``BookBatch`` of market data.
Every record gets the verdict of ``feeds.wire.codec.decode`` (schema, types, NaN/inf,
positive prices, ordered levels, bid < ask, size limit): control records from the
codec itself, market data by batch from ``feeds.wire.fast_mbp10.decode_books``
(same verdict and reason, value by value, at wire speed); market data rows then
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

Fills for unknown or finished parents, parent orders whose id is already
known and cancels of unknown parents are found on the engine thread
(:mod:`agent.live.engine_step`); the service dead-letters them through
:meth:`Intake.dead_letters` (reasons :data:`UNKNOWN_PARENT`, :data:`PARENT_DONE`,
:data:`DUPLICATE_PARENT`). A ``kill_switch.v1`` on the parent-orders topic becomes a
:class:`agent.live.kill_switch.KillSwitchCommand` in ``Inbound.kill``.

Every dead-lettered record is logged (event ``dead_letter``: topic, partition,
offset, reason, detail), at most ``log.dead_letter_lines`` lines per reason and
``log.rate_limit_interval_s``, then one line with the number suppressed
(:class:`agent.live.events.RateLimitedLog`). A fill
repeating a ``fill_id`` is normal at-least-once redelivery: it is counted
(``mpc_agent_fills_duplicate_total``) and ignored, not dead-lettered.
An ``oversize`` record's DLQ copy keeps only the first :data:`DLQ_OVERSIZE_KEEP_BYTES`
bytes (so the copy itself fits the producer's size limit).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.core.errors import DataError
from agent.core.model import Fill, ParentOrder
from agent.live.events import RateLimitedLog
from agent.live.kill_switch import KILL_SWITCH_KEY, KillSwitchCommand, command_from_message
from agent.live.metrics import AgentMetrics
from agent.live.settings import TopicsSection
from feeds.book import BookBatch
from feeds.ports import OutRecord, Record, dead_letter
from feeds.reasons import DUPLICATE_PARENT as DUPLICATE_PARENT
from feeds.reasons import (
    INVALID_CHILD_ORDER_ID,
    INVALID_VALUE,
    OVERSIZE,
    PARENT_EXPIRED,
    TOO_MANY_PERIODS,
    TS_FUTURE,
)
from feeds.reasons import PARENT_DONE as PARENT_DONE
from feeds.reasons import UNKNOWN_PARENT as UNKNOWN_PARENT
from feeds.wire import codec
from feeds.wire.fast_mbp10 import DecodedBooks, decode_books
from feeds.wire.messages import KillSwitchMsg, ParentCancelMsg, ParentOrderMsg

MD_SCHEMAS = frozenset({"mbp10.v1"})
PARENT_SCHEMAS = frozenset({"parent_order.v1", "parent_cancel.v1", "kill_switch.v1"})
FILL_SCHEMAS = frozenset({"fill.v1"})

MAX_PARENT_LEAD_NS = 7 * 86_400 * 1_000_000_000
"""A parent order may start at most a week ahead of the clock."""
DLQ_OVERSIZE_KEEP_BYTES = 4096

log = logging.getLogger("agent.live.intake")


@dataclass
class Inbound:
    """One batch of validated input, in the order the engine applies it.

    ``control`` holds ``ParentOrder`` (new) or ``str`` (parent_id to cancel); ``kill``
    the kill-switch commands (applied before the engine step of the batch).
    """

    control: list[ParentOrder | str] = field(default_factory=list)
    kill: list[KillSwitchCommand] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    control_records: list[Record | None] = field(default_factory=list)
    fill_records: list[Record | None] = field(default_factory=list)
    md: BookBatch | None = None
    dlq: list[OutRecord] = field(default_factory=list)
    records: int = 0
    flush: bool = False
    hold_md: bool = False
    """Hold the market data (parent-order or fill partitions behind: ``agent.live.engine_step``)."""
    tally: list[Callable[[], None]] = field(default_factory=list)
    """Metric updates of this batch, applied by :meth:`Intake.count` when the batch is processed
    (a batch discarded at a rebalance is read again and must not be counted twice)."""

    @property
    def empty(self) -> bool:
        return not (self.control or self.fills or self.kill or (self.md is not None and len(self.md)) or self.flush)


class Intake:
    """Decoder + validator with the per-symbol ``last_ts`` state (see the module docstring)."""

    def __init__(self, topics: TopicsSection, metrics: AgentMetrics, *, max_message_bytes: int = 1 << 20,
                 clock: Callable[[], int] | None = None, max_future_skew_ms: float = 5_000.0,
                 max_parent_periods: int = 100_000, dead_letter_log: RateLimitedLog | None = None) -> None:
        self.topics, self.metrics = topics, metrics
        self._tally: list[Callable[[], None]] | None = None
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.max_future_skew_ns = int(max_future_skew_ms * 1e6)
        self.max_parent_periods = max_parent_periods
        self.last_ts: dict[str, int] = {}
        self.last_md_monotonic = time.monotonic()
        self.dead_letter_log = dead_letter_log or RateLimitedLog(log)

    # ------------------------------------------------------------- public
    def take(self, records: Mapping[str, Sequence[Record]], extra_md: BookBatch | None = None, *,
             deferred: bool = False, md_decoded: DecodedBooks | None = None) -> Inbound:
        """Decode and validate ``records`` (by topic) plus optional already-parsed market data.

        With ``deferred`` the batch's metric updates wait in ``Inbound.tally`` until :meth:`count`
        (the service's delivery calls it when it processes the batch, never for a discarded one).
        ``md_decoded``: ``decode_books`` of the market-data records' values, already done (by
        :class:`agent.live.book_decoder.BookDecoder`); None = decode them here."""
        inb = Inbound(records=sum(len(v) for v in records.values()))
        self._tally = inb.tally if deferred else None
        try:
            self._take(records, extra_md, inb, md_decoded)
        finally:
            self._tally = None
        return inb

    def _take(self, records: Mapping[str, Sequence[Record]], extra_md: BookBatch | None, inb: Inbound,
              md_decoded: DecodedBooks | None) -> None:
        for rec in records.get(self.topics.parent_orders, ()):
            item = self._parent(rec, inb.dlq)
            if isinstance(item, KillSwitchCommand):
                inb.kill.append(item)
            elif item is not None:
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
        md, recs = self._books(records.get(self.topics.md, ()), inb.dlq, md_decoded)
        if extra_md is not None and len(extra_md):
            md = extra_md if md is None else BookBatch.concat([extra_md, md])
            recs = None
        if md is not None and len(md):
            inb.md = self.validate_rows(md, recs, inb.dlq)

    def validate_rows(self, md: BookBatch, recs: Sequence[Record] | None, dlq: list[OutRecord]) -> BookBatch:
        """Drop rows ahead of the clock (``ts_future``) and rows ``BookBatch.validate`` refuses
        (DLQ copies when ``recs`` maps rows to records)."""
        if self.clock is not None and self.max_future_skew_ns > 0 and len(md):
            future = md.ts_event > self.clock() + self.max_future_skew_ns
            if future.any():
                idx = np.flatnonzero(future).tolist()
                n_future = len(idx)
                self._count(lambda: self.metrics.reject(TS_FUTURE, n_future))
                if recs is not None:
                    detail = f"{TS_FUTURE}: ts_event more than {self.max_future_skew_ns / 1e6:g} ms ahead of the clock"
                    for i in idx:
                        dlq.append(dead_letter(recs[i], TS_FUTURE, detail, self.topics.dlq))
                        self._log_dead(recs[i], TS_FUTURE, detail, self.topics.dlq)
                    recs = [r for r, f in zip(recs, future.tolist(), strict=True) if not f]
                md = md.take(~future)
                if not len(md):
                    return md
        v = md.validate(self.last_ts)
        if v.bad.any():
            for i in np.flatnonzero(v.bad).tolist():
                reason = str(v.reason[i])
                self._count(functools.partial(self.metrics.reject, reason))
                if recs is not None:
                    dlq.append(dead_letter(recs[i], reason, f"{reason}: rejected by BookBatch.validate",
                                           self.topics.dlq))
                    self._log_dead(recs[i], reason, "rejected by BookBatch.validate", self.topics.dlq)
            md = md.take(~v.bad)
        if len(md):
            for sym, ts in md.latest_ts().items():
                self.last_ts[sym] = max(ts, self.last_ts.get(sym, ts))
            n_rows = len(md)
            self._count(lambda: self.metrics.snapshots.inc(n_rows))
            if self.clock is not None:
                age_s = max(0.0, (self.clock() - int(md.ts_event.max())) / 1e9)
                self._count(lambda: self.metrics.snapshot_age.observe(age_s))
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
        self._log_dead(rec, reason, detail, out.topic)
        if md:
            self._count(lambda: self.metrics.reject(reason))
        else:
            self._count(lambda: self.metrics.messages_rejected.labels(topic=rec.topic, reason=reason).inc())

    def _count(self, update: Callable[[], None]) -> None:
        """Apply a metric update now, or with its batch (:meth:`count`) while :meth:`take` decodes one."""
        if self._tally is None:
            update()
        else:
            self._tally.append(update)

    def count(self, inb: Inbound) -> None:
        """Apply the metric updates of a batch that is being processed (once; a discarded batch's never)."""
        updates, inb.tally = inb.tally, []
        for update in updates:
            update()

    def _log_dead(self, rec: Record, reason: str, detail: str, dlq_topic: str) -> None:
        """One ``dead_letter`` log line (rate-limited per reason)."""
        what = ("market data" if rec.topic == self.topics.md else "parent order/control message"
                if rec.topic == self.topics.parent_orders else "fill" if rec.topic == self.topics.fills
                else "message")
        self.dead_letter_log.emit(reason, logging.WARNING, "dead_letter", "%s dead-lettered (%s): %s", what,
                                  reason, detail[:300], topic=rec.topic, partition=rec.partition,
                                  offset=rec.offset, key=(rec.key or b"").decode("utf-8", "replace")[:64],
                                  reason=reason, dlq_topic=dlq_topic)

    def _decode(self, rec: Record, expected: frozenset[str], dlq: list[OutRecord]) -> Any | None:
        try:
            return codec.decode(rec.value, expected=expected, max_bytes=self.max_message_bytes)
        except DataError as exc:
            self._reject(rec, str(getattr(exc, "reason", "invalid_value")), str(exc), dlq)
            return None

    def _parent(self, rec: Record, dlq: list[OutRecord]) -> ParentOrder | str | KillSwitchCommand | None:
        msg = self._decode(rec, PARENT_SCHEMAS, dlq)
        if isinstance(msg, KillSwitchMsg):
            now = self.clock() if self.clock is not None else time.time_ns()
            return command_from_message(msg, f"topic {rec.topic}[{rec.partition}]@{rec.offset}", now)
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
        if p.parent_id == KILL_SWITCH_KEY:
            return INVALID_VALUE, f"{INVALID_VALUE}: parent_id {KILL_SWITCH_KEY!r} is reserved"
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

    def _books(self, recs: Sequence[Record], dlq: list[OutRecord],
               decoded: DecodedBooks | None) -> tuple[BookBatch | None, list[Record] | None]:
        """``mbp10.v1`` records -> BookBatch by ``feeds.wire.fast_mbp10.decode_books`` (the strict
        codec's verdict, value by value; ``decoded`` when it was already run on these values);
        refused records -> DLQ copies with the codec's reason."""
        if not recs:
            return None, None
        out = decoded if decoded is not None else decode_books([r.value for r in recs],
                                                                max_bytes=self.max_message_bytes)
        if len(out.books) + len(out.rejected) != len(recs):
            raise ValueError(f"md_decoded covers {len(out.books) + len(out.rejected)} values, not {len(recs)}")
        for bad in out.rejected:
            self._reject(recs[bad.index], bad.reason, bad.detail, dlq)
        if not len(out.books):
            return None, None
        # offset order is kept: per symbol (one partition, key = symbol) time must not go
        # backwards, and a row that does is rejected by validate(), never silently re-sorted
        return out.books, [recs[i] for i in out.index.tolist()]
