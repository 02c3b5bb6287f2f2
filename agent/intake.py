"""Validation at the boundary: consumed records -> domain objects, bad ones -> DLQ copies.

:class:`Intake` turns one ``getmany`` result into an :class:`Inbound`: parent
orders and cancels, fills, and one time-ordered ``BookBatch`` of market data.
Every record is decoded with ``feeds.codec.decode`` (schema, types, NaN/inf,
positive prices, ordered levels, bid < ask, size limit); market data rows then
pass ``BookBatch.validate`` with the last accepted ``ts_event`` per symbol, so
time going backwards across batches is caught too. A rejected record becomes a
DLQ copy (original bytes, ``error`` header = the stable reason) and is counted
(``mpc_agent_snapshots_rejected_total{reason}`` for market data,
``mpc_agent_messages_rejected_total{topic,reason}`` for the control topics).
Nothing here raises for a bad message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import pydantic

from agent.config import TopicsSection
from agent.errors import DataError
from agent.metrics import AgentMetrics
from agent.model import Fill, ParentOrder
from feeds import codec
from feeds.book import BookBatch
from feeds.messages import MAX_LEVELS, Mbp10, ParentCancelMsg, ParentOrderMsg, WireMessage
from feeds.ports import OutRecord, Record, dead_letter

MD_SCHEMAS = frozenset({"mbp10.v1"})
PARENT_SCHEMAS = frozenset({"parent_order.v1", "parent_cancel.v1"})
FILL_SCHEMAS = frozenset({"fill.v1"})


@dataclass
class Inbound:
    """One batch of validated input, in the order the engine applies it.

    ``control`` holds ``ParentOrder`` (new) or ``str`` (parent_id to cancel).
    """

    control: list[ParentOrder | str] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    md: BookBatch | None = None
    dlq: list[OutRecord] = field(default_factory=list)
    records: int = 0
    flush: bool = False

    @property
    def empty(self) -> bool:
        return not (self.control or self.fills or (self.md is not None and len(self.md)))


class Intake:
    """Decoder + validator with the per-symbol ``last_ts`` state (see the module docstring)."""

    def __init__(self, topics: TopicsSection, metrics: AgentMetrics, *, max_message_bytes: int = 1 << 20,
                 clock: Callable[[], int] | None = None) -> None:
        self.topics, self.metrics = topics, metrics
        self.max_message_bytes = max_message_bytes
        self.clock = clock
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
        for rec in records.get(self.topics.fills, ()):
            msg = self._decode(rec, FILL_SCHEMAS, inb.dlq)
            if msg is not None:
                inb.fills.append(codec.fill_to_model(msg))
        md, recs = self._books(records.get(self.topics.md, ()), inb.dlq)
        if extra_md is not None and len(extra_md):
            md = extra_md if md is None else BookBatch.concat([extra_md, md])
            recs = None
        if md is not None and len(md):
            inb.md = self.validate_rows(md, recs, inb.dlq)
        return inb

    def validate_rows(self, md: BookBatch, recs: Sequence[Record] | None, dlq: list[OutRecord]) -> BookBatch:
        """Drop rows ``BookBatch.validate`` refuses (DLQ copies when ``recs`` maps rows to records)."""
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

    # ----------------------------------------------------------- internals
    def _reject(self, rec: Record, reason: str, detail: str, dlq: list[OutRecord]) -> None:
        if rec.topic == self.topics.md:
            dlq.append(dead_letter(rec, reason, detail, self.topics.dlq))
            self.metrics.reject(reason)
        else:
            dlq.append(dead_letter(rec, reason, detail, f"{rec.topic}.dlq"))
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
                return codec.parent_to_model(msg)
            except (DataError, ValueError) as exc:
                self._reject(rec, str(getattr(exc, "reason", "invalid_value")), str(exc), dlq)
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
