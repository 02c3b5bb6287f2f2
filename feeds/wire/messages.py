"""Pydantic v2 models of the Kafka messages (DESIGN.md section 5) and their rejection reasons.

=====================  =========================  ======================
schema                 model                      topic (default)
=====================  =========================  ======================
``mbp10.v1``           :class:`Mbp10`             ``md.mbp10``
``parent_order.v1``    :class:`ParentOrderMsg`    ``exec.parent-orders``
``parent_cancel.v1``   :class:`ParentCancelMsg`   ``exec.parent-orders``
``kill_switch.v1``     :class:`KillSwitchMsg`     ``exec.parent-orders`` (and ``exec.agent-state``)
``child_order.v1``     :class:`ChildOrderMsg`     ``exec.child-orders``
``fill.v1``            :class:`FillMsg`           ``exec.fills``
``agent_state.v1``     :class:`AgentStateMsg`     ``exec.agent-state``
=====================  =========================  ======================

Models are frozen and strict: no string->number coercion, NaN/inf rejected,
unknown fields rejected. Invariant violations raise pydantic errors whose
``type`` is one of ``feeds.reasons.VALUE_REASONS``; ``feeds.wire.codec`` turns them
into our exceptions. A book (``mbp10.v1``) is judged by ``feeds.book.check_books``,
the validator the file readers and the batch decoder use too. Use
``feeds.wire.codec`` (which re-exports these names), not this module.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from agent.core.errors import SchemaError
from feeds.book import BOOK_RULES, RULE_TEXT, check_books
from feeds.reasons import (
    END_BEFORE_START,
    INVALID_CHILD_ORDER_ID,
    INVALID_PARTICIPATION,
    INVALID_TIMESTAMP,
    INVALID_VALUE,
    LEVELS_MISMATCH,
    NEGATIVE_SIZE,
    NON_POSITIVE_PRICE,
    NON_POSITIVE_QUANTITY,
    TOO_MANY_LEVELS,
)

DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
MAX_LEVELS = 10
MAX_TEXT = 256
TIMESTAMP_MAX = 2**63 - 1


class MessageSchemaError(SchemaError):
    """A message whose shape is wrong (bytes, JSON, schema tag, fields, types)."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


# ----------------------------------------------------------------- field types
def _fail(reason: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(reason, message)


def _price(v: float) -> float:
    if not v > 0:
        raise _fail(NON_POSITIVE_PRICE, "price must be > 0")
    return v


def _size(v: float) -> float:
    if v < 0:
        raise _fail(NEGATIVE_SIZE, "size must be >= 0")
    return v


def _quantity(v: float) -> float:
    if not v > 0:
        raise _fail(NON_POSITIVE_QUANTITY, "quantity must be > 0 shares")
    return v


def _non_negative(v: float) -> float:
    if v < 0:
        raise _fail(INVALID_VALUE, "value must be >= 0")
    return v


def _ts(v: int) -> int:
    if not 0 <= v <= TIMESTAMP_MAX:
        raise _fail(INVALID_TIMESTAMP, "timestamp must be int ns since the epoch in [0, 2**63)")
    return v


def valid_text(v: str) -> bool:
    """An identifier: 1-:data:`MAX_TEXT` characters without surrounding blanks."""
    return 0 < len(v) <= MAX_TEXT and v == v.strip()


def _text(v: str) -> str:
    if not valid_text(v):
        raise _fail(INVALID_VALUE, "identifier must be 1-256 characters without surrounding blanks")
    return v


def _timestamp_ns(v: Any) -> Any:
    """ISO-8601 with an explicit offset (``Z`` or ``+hh:mm``, up to 9 decimals) -> int ns."""
    if isinstance(v, str):
        try:
            return parse_iso_ns(v)
        except ValueError as exc:
            raise _fail(INVALID_TIMESTAMP, str(exc)) from None
    return v


Price = Annotated[float, AfterValidator(_price)]
Size = Annotated[float, AfterValidator(_size)]
Quantity = Annotated[float, AfterValidator(_quantity)]
NonNegative = Annotated[float, AfterValidator(_non_negative)]
TimestampNs = Annotated[int, AfterValidator(_ts)]
IsoOrNs = Annotated[int, BeforeValidator(_timestamp_ns), AfterValidator(_ts)]
Text = Annotated[str, AfterValidator(_text)]
Side = Literal["buy", "sell"]
BookAction = Literal["A", "C", "M", "T", "F", "R", "N"]
"""Add, cancel, modify, trade, fill, clear (reset), none."""
BookSide = Literal["A", "B", "N"]

_ISO = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})$"
)

def parse_iso_ns(text: str) -> int:
    """ISO-8601 timestamp with an explicit offset -> int ns since the epoch (UTC), exactly.

    Accepts ``2025-04-03T13:30:00Z``, ``2025-04-03 09:30:00.123456789-04:00``;
    rejects naive timestamps (no ``Z``/offset) instead of guessing a zone.
    """
    m = _ISO.match(text.strip())
    if m is None:
        raise ValueError(f"not an ISO-8601 timestamp with a UTC offset: {text[:40]!r}")
    day, clock, frac, off = m.groups()
    off = "+00:00" if off == "Z" else off
    dt = datetime.fromisoformat(f"{day}T{clock}{off}")
    offset = dt.utcoffset() or timedelta(0)
    delta = dt.replace(tzinfo=None) - offset - datetime(1970, 1, 1)
    secs = delta.days * 86_400 + delta.seconds
    return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


class WireMessage(BaseModel):
    """Base: frozen, strict (no string->number coercion), NaN/inf rejected, unknown fields rejected."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, allow_inf_nan=False,
        validate_by_alias=True, validate_by_name=True, serialize_by_alias=True,
    )
    SCHEMA: ClassVar[str]


# -------------------------------------------------------------------- messages
class Mbp10(WireMessage):
    """``mbp10.v1``: one MBP-10 event with the book after it, best level first.

    Empty levels are simply absent (lists shorter than 10); ``price`` is null
    when the event has none. Bids strictly descending, asks strictly
    ascending, ``bid_px[0] < ask_px[0]``.
    """

    SCHEMA: ClassVar[str] = "mbp10.v1"
    schema_: Literal["mbp10.v1"] = Field("mbp10.v1", alias="schema")
    symbol: Text
    ts_event: TimestampNs
    ts_recv: TimestampNs | None = None
    sequence: Annotated[int, Field(ge=0)] | None = None
    action: BookAction
    side: BookSide
    price: Price | None = None
    size: Size = 0.0
    # levels are checked in one pass by ``_book`` (per-item validators cost ~40 calls a message)
    bid_px: list[float] = Field(default_factory=list)
    bid_sz: list[float] = Field(default_factory=list)
    ask_px: list[float] = Field(default_factory=list)
    ask_sz: list[float] = Field(default_factory=list)

    @model_validator(mode="after")
    def _book(self) -> Mbp10:
        if len(self.bid_px) != len(self.bid_sz) or len(self.ask_px) != len(self.ask_sz):
            raise _fail(LEVELS_MISMATCH, "bid_px/bid_sz and ask_px/ask_sz must have equal lengths")
        if len(self.bid_px) > MAX_LEVELS or len(self.ask_px) > MAX_LEVELS:
            raise _fail(TOO_MANY_LEVELS, f"at most {MAX_LEVELS} levels a side")
        width = max(len(self.bid_px), len(self.ask_px), 1)
        code = int(check_books(
            np.array([np.nan if self.price is None else self.price]), np.array([self.size]), (self.action,),
            _row(self.bid_px, np.nan, width), _row(self.bid_sz, 0.0, width),
            _row(self.ask_px, np.nan, width), _row(self.ask_sz, 0.0, width),
        )[0])
        if code:
            raise _fail(BOOK_RULES[code - 1], RULE_TEXT[code - 1])
        return self


def _row(values: list[float], fill: float, width: int) -> np.ndarray:
    """One message's levels as a (1, width) row padded with ``fill``."""
    out = np.full((1, width), fill)
    out[0, : len(values)] = values
    return out


class ParentOrderMsg(WireMessage):
    """``parent_order.v1``: a trader's instruction; ``start``/``end`` are ISO-8601 or int ns."""

    SCHEMA: ClassVar[str] = "parent_order.v1"
    schema_: Literal["parent_order.v1"] = Field("parent_order.v1", alias="schema")
    parent_id: Text
    symbol: Text
    side: Side
    quantity: Quantity
    start: IsoOrNs
    end: IsoOrNs
    period_s: Quantity
    max_participation: float | None = None
    risk_aversion: NonNegative | None = None
    limit_price: Price | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParentOrderMsg:
        if self.end <= self.start:
            raise _fail(END_BEFORE_START, "end must be after start")
        mp = self.max_participation
        if mp is not None and not 0 < mp <= 1:
            raise _fail(INVALID_PARTICIPATION, "max_participation must be in (0, 1]")
        return self


class ParentCancelMsg(WireMessage):
    """``parent_cancel.v1``: stop working a parent order (no new child orders)."""

    SCHEMA: ClassVar[str] = "parent_cancel.v1"
    schema_: Literal["parent_cancel.v1"] = Field("parent_cancel.v1", alias="schema")
    parent_id: Text
    ts_event: TimestampNs | None = None
    reason: str | None = None


class KillSwitchMsg(WireMessage):
    """``kill_switch.v1``: stop (``on: true``) or resume (``on: false``) sending child orders.

    While on, no child order is sent and parent orders are held (their periods
    are skipped; they expire only when their end passes). ``on`` is a JSON
    boolean (strict: not ``1`` or ``"true"``); ``reason`` is required (1-256
    characters). The agent also keeps its current switch under the key
    ``__kill_switch__`` of the state topic in this schema (``ts_event`` = when it
    changed, ``source`` = where the change came from), so it survives a restart.
    """

    SCHEMA: ClassVar[str] = "kill_switch.v1"
    schema_: Literal["kill_switch.v1"] = Field("kill_switch.v1", alias="schema")
    on: bool
    reason: Text
    ts_event: TimestampNs | None = None
    source: Text | None = None


class SolverMsg(WireMessage):
    """Solver summary of a child order's decision."""

    SCHEMA: ClassVar[str] = ""
    status: str
    iterations: Annotated[int, Field(ge=0)]
    solve_us: NonNegative


class ImpactMsg(WireMessage):
    """Impact coefficients of the period: ``g(x) = beta*x + gamma*x**2`` dollars."""

    SCHEMA: ClassVar[str] = ""
    beta: float
    gamma: float


class ChildOrderMsg(WireMessage):
    """``child_order.v1``: the IOC instruction of one period.

    ``child_order_id == f"{parent_id}:{period_index}"`` (checked); ``plan`` is
    the planned shares of the next few periods.
    """

    SCHEMA: ClassVar[str] = "child_order.v1"
    schema_: Literal["child_order.v1"] = Field("child_order.v1", alias="schema")
    child_order_id: Text
    parent_id: Text
    symbol: Text
    side: Side
    quantity: Quantity
    limit_price: Price
    time_in_force: Literal["IOC"] = "IOC"
    period_index: Annotated[int, Field(ge=0)]
    ts_event: TimestampNs
    ts_init: TimestampNs
    remaining_before: NonNegative
    plan: list[NonNegative] = Field(default_factory=list)
    solver: SolverMsg | None = None
    impact: ImpactMsg | None = None

    @model_validator(mode="after")
    def _id(self) -> ChildOrderMsg:
        if self.child_order_id != f"{self.parent_id}:{self.period_index}":
            raise _fail(INVALID_CHILD_ORDER_ID, "child_order_id must be '{parent_id}:{period_index}'")
        return self


class FillMsg(WireMessage):
    """``fill.v1``: an execution of a child order; de-duplicated by ``fill_id``."""

    SCHEMA: ClassVar[str] = "fill.v1"
    schema_: Literal["fill.v1"] = Field("fill.v1", alias="schema")
    fill_id: Text
    child_order_id: Text
    parent_id: Text
    quantity: Quantity
    price: Price
    ts_event: TimestampNs


class AgentStateMsg(WireMessage):
    """``agent_state.v1``: what must survive a crash, per parent order (compacted topic, key parent_id).

    ``engine`` is the engine's crash-recovery record of the parent
    (``ExecutionEngine.snapshot``: a JSON object restored with ``ExecutionEngine.restore``),
    carried once; ``status``, ``remaining`` and ``filled_quantity`` are a three-number
    summary for people and tools reading the topic. ``agent_id`` is the agent
    instance that wrote it.
    """

    SCHEMA: ClassVar[str] = "agent_state.v1"
    schema_: Literal["agent_state.v1"] = Field("agent_state.v1", alias="schema")
    parent_id: Text
    ts_event: TimestampNs
    status: Literal["active", "completed", "cancelled", "expired"] = "active"
    remaining: NonNegative
    filled_quantity: NonNegative = 0.0
    agent_id: str = ""
    engine: dict[str, Any] = Field(default_factory=dict)


Message = Mbp10 | ParentOrderMsg | ParentCancelMsg | KillSwitchMsg | ChildOrderMsg | FillMsg | AgentStateMsg
MODELS: dict[str, type[WireMessage]] = {
    m.SCHEMA: m for m in (Mbp10, ParentOrderMsg, ParentCancelMsg, KillSwitchMsg, ChildOrderMsg, FillMsg,
                          AgentStateMsg)
}
SCHEMAS: frozenset[str] = frozenset(MODELS)
