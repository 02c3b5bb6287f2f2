"""Wire codec: bytes <-> validated messages, and messages <-> domain types / ``BookBatch``.

Values are compact UTF-8 JSON objects with a ``schema`` tag (models in
``feeds.wire.messages``, re-exported here). :func:`decode` never lets a pydantic
error escape: it raises :class:`MessageSchemaError` (shape: bytes, JSON,
schema tag, fields, types) or :class:`agent.core.errors.ValidationError` (values
breaking an invariant), both with a short stable ``reason`` from
:data:`REASONS`, used as the DLQ ``error`` header and as a metric label.
"""

from __future__ import annotations

from typing import Any, NoReturn, TypeVar

import numpy as np
import pydantic
import pydantic_core

from agent.core.errors import DataError, ValidationError
from agent.core.model import ChildOrder, Fill, ImpactParams, ParentOrder, SolverInfo
from feeds.book import BookBatch, pad_levels
from feeds.reasons import (
    INVALID_JSON,
    INVALID_TYPE,
    INVALID_UTF8,
    INVALID_VALUE,
    MISSING_FIELD,
    NON_FINITE,
    NOT_AN_OBJECT,
    NULL_VALUE,
    OVERSIZE,
    SCHEMA_REASONS,
    UNEXPECTED_FIELD,
    UNEXPECTED_SCHEMA,
    UNKNOWN_SCHEMA,
    VALUE_REASONS,
)
from feeds.reasons import WIRE_REASONS as REASONS
from feeds.wire.messages import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_LEVELS,
    MODELS,
    SCHEMAS,
    AgentStateMsg,
    ChildOrderMsg,
    FillMsg,
    ImpactMsg,
    KillSwitchMsg,
    Mbp10,
    Message,
    MessageSchemaError,
    ParentCancelMsg,
    ParentOrderMsg,
    SolverMsg,
    WireMessage,
    parse_iso_ns,
)

M = TypeVar("M", bound=WireMessage)

_TYPE_REASONS = {
    "missing": MISSING_FIELD,
    "extra_forbidden": UNEXPECTED_FIELD,
    "finite_number": NON_FINITE,
    "literal_error": INVALID_VALUE,
    "greater_than_equal": INVALID_VALUE,
    "greater_than": INVALID_VALUE,
    "less_than_equal": INVALID_VALUE,
    "less_than": INVALID_VALUE,
}
_VALUE = frozenset(VALUE_REASONS)


def _reason_of(err: pydantic.ValidationError) -> tuple[str, str]:
    first = err.errors(include_url=False)[0]
    kind = str(first["type"])
    reason = kind if kind in _VALUE else _TYPE_REASONS.get(kind, INVALID_TYPE)
    where = ".".join(str(p) for p in first["loc"]) or "message"
    return reason, f"{where}: {first['msg']}"


def rejection(reason: str, text: str, where: str = "message") -> DataError:
    """The exception :func:`decode` raises for ``reason`` (``where``: the field path, ``message``
    for a rule over the whole message), so that other decoders word their refusals alike."""
    detail = f"{reason}: {where}: {text}"
    return ValidationError(reason, detail) if reason in _VALUE else MessageSchemaError(reason, detail)


def _raise(reason: str, detail: str) -> NoReturn:
    where, _, text = detail.partition(": ")
    raise rejection(reason, text, where)


def decode(
    raw: bytes | None,
    *,
    expected: set[str] | frozenset[str] | None = None,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Message:
    """Parse and validate one message value.

    Parameters
    ----------
    raw : the Kafka record value (UTF-8 JSON object); None (a tombstone) -> ``null_value``.
    expected : schema names accepted on this topic (None: any known schema).
    max_bytes : size limit; larger values are rejected with ``oversize``.

    Raises
    ------
    MessageSchemaError, agent.core.errors.ValidationError
        With ``.reason`` one of :data:`REASONS`.
    """
    if raw is None:
        raise MessageSchemaError(NULL_VALUE, "null_value: the record has no value (a tombstone?)")
    if len(raw) > max_bytes:
        raise MessageSchemaError(OVERSIZE, f"oversize: message value is {len(raw)} bytes (limit {max_bytes})")
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageSchemaError(INVALID_UTF8, f"invalid_utf8: {exc}") from None
    try:
        obj = pydantic_core.from_json(raw, allow_inf_nan=True)
    except ValueError as exc:
        raise MessageSchemaError(INVALID_JSON, f"invalid_json: {exc}") from None
    if not isinstance(obj, dict):
        raise MessageSchemaError(NOT_AN_OBJECT, "not_an_object: a message is a JSON object")
    tag = obj.get("schema")
    if tag is None:
        raise MessageSchemaError(MISSING_FIELD, "missing_field: schema")
    model = MODELS.get(tag) if isinstance(tag, str) else None
    if model is None:
        raise MessageSchemaError(UNKNOWN_SCHEMA, f"unknown_schema: {str(tag)[:64]!r}")
    if expected is not None and tag not in expected:
        raise MessageSchemaError(UNEXPECTED_SCHEMA, f"unexpected_schema: {tag} not in {sorted(expected)}")
    try:
        msg: Message = model.model_validate(obj)  # type: ignore[assignment]
    except pydantic.ValidationError as exc:
        _raise(*_reason_of(exc))
    return msg


def decode_as(
    raw: bytes | None, model: type[M], *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> M:
    """:func:`decode` restricted to one schema, typed: ``decode_as(v, FillMsg) -> FillMsg``."""
    msg = decode(raw, expected={model.SCHEMA}, max_bytes=max_bytes)
    if not isinstance(msg, model):  # unreachable: ``expected`` pins the schema
        raise MessageSchemaError(UNEXPECTED_SCHEMA, f"unexpected_schema: wanted {model.SCHEMA}")
    return msg


def encode(message: WireMessage, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    """Compact UTF-8 JSON of ``message`` (None fields omitted); ``oversize`` if above ``max_bytes``."""
    raw = message.model_dump_json(exclude_none=True).encode("utf-8")
    if len(raw) > max_bytes:
        raise MessageSchemaError(OVERSIZE, f"oversize: encoded {len(raw)} bytes > {max_bytes}")
    return raw


def build(model: type[WireMessage], **fields: Any) -> Any:
    """Construct a message from Python values, mapping failures to our errors (not pydantic's)."""
    try:
        return model.model_validate(fields)
    except pydantic.ValidationError as exc:
        _raise(*_reason_of(exc))


# ----------------------------------------------------------------- conversions
def parent_to_model(msg: ParentOrderMsg, *, lot_size: float = 1.0) -> ParentOrder:
    """Wire parent order -> ``agent.core.model.ParentOrder`` (``risk_aversion`` null -> 0)."""
    return ParentOrder(
        parent_id=msg.parent_id, symbol=msg.symbol, side=msg.side, quantity=msg.quantity,
        start_ns=msg.start, end_ns=msg.end, period_s=msg.period_s,
        max_participation=msg.max_participation, risk_aversion=msg.risk_aversion or 0.0,
        limit_price=msg.limit_price, lot_size=lot_size,
    )


def parent_from_model(order: ParentOrder) -> ParentOrderMsg:
    """``ParentOrder`` -> wire message (times as int ns)."""
    msg: ParentOrderMsg = build(
        ParentOrderMsg, parent_id=order.parent_id, symbol=order.symbol, side=order.side,
        quantity=float(order.quantity), start=order.start_ns, end=order.end_ns,
        period_s=float(order.period_s), max_participation=order.max_participation,
        risk_aversion=float(order.risk_aversion), limit_price=order.limit_price,
    )
    return msg


def child_from_model(order: ChildOrder) -> ChildOrderMsg:
    """``ChildOrder`` -> wire message (plan summary, solver and impact included when set)."""
    s, imp = order.solver, order.impact
    msg: ChildOrderMsg = build(
        ChildOrderMsg, child_order_id=order.child_order_id, parent_id=order.parent_id,
        symbol=order.symbol, side=order.side, quantity=float(order.quantity),
        limit_price=float(order.limit_price), time_in_force=order.time_in_force,
        period_index=int(order.period_index), ts_event=int(order.ts_event),
        ts_init=int(order.ts_init), remaining_before=float(order.remaining_before),
        plan=[float(x) for x in order.plan],
        solver=None if s is None else {
            "status": s.status, "iterations": int(s.iterations), "solve_us": float(s.solve_us)},
        impact=None if imp is None else {"beta": float(imp.beta), "gamma": float(imp.gamma)},
    )
    return msg


def child_to_model(msg: ChildOrderMsg, *, solver_name: str = "osqp") -> ChildOrder:
    """Wire child order -> ``ChildOrder``; the wire carries no solver name, ``solver_name`` fills it."""
    s, imp = msg.solver, msg.impact
    return ChildOrder(
        child_order_id=msg.child_order_id, parent_id=msg.parent_id, symbol=msg.symbol,
        side=msg.side, quantity=msg.quantity, limit_price=msg.limit_price,
        period_index=msg.period_index, ts_event=msg.ts_event, ts_init=msg.ts_init,
        remaining_before=msg.remaining_before, plan=tuple(msg.plan),
        solver=None if s is None else SolverInfo(solver_name, s.status, s.iterations, s.solve_us),
        impact=None if imp is None else ImpactParams(beta=imp.beta, gamma=imp.gamma),
        time_in_force=msg.time_in_force,
    )


def fill_from_model(fill: Fill) -> FillMsg:
    """``Fill`` -> wire message."""
    msg: FillMsg = build(
        FillMsg, fill_id=fill.fill_id, child_order_id=fill.child_order_id,
        parent_id=fill.parent_id, quantity=float(fill.quantity), price=float(fill.price),
        ts_event=int(fill.ts_event),
    )
    return msg


def fill_to_model(msg: FillMsg) -> Fill:
    """Wire fill -> ``Fill``."""
    return Fill(msg.fill_id, msg.child_order_id, msg.parent_id, msg.quantity, msg.price, msg.ts_event)


def books_to_batch(messages: list[Mbp10], levels: int = MAX_LEVELS) -> BookBatch:
    """``mbp10.v1`` messages -> ``BookBatch`` (levels padded to ``levels`` with NaN price / 0 size).

    ``ts_recv`` is kept only when every message has it; a null ``price`` becomes NaN.
    """
    if not messages:
        return BookBatch.empty(levels)
    recv = [m.ts_recv for m in messages]
    return BookBatch(
        ts_event=np.fromiter((m.ts_event for m in messages), np.int64, len(messages)),
        symbol=np.array([m.symbol for m in messages], dtype=np.str_),
        action=np.array([m.action for m in messages], dtype="<U1"),
        side=np.array([m.side for m in messages], dtype="<U1"),
        price=np.array([np.nan if m.price is None else m.price for m in messages], np.float64),
        size=np.fromiter((m.size for m in messages), np.float64, len(messages)),
        bid_px=pad_levels([m.bid_px for m in messages], np.nan, levels),
        bid_sz=pad_levels([m.bid_sz for m in messages], 0.0, levels),
        ask_px=pad_levels([m.ask_px for m in messages], np.nan, levels),
        ask_sz=pad_levels([m.ask_sz for m in messages], 0.0, levels),
        ts_recv=None if any(r is None for r in recv) else np.array(recv, dtype=np.int64),
    )


def batch_row_to_mbp10(batch: BookBatch, i: int, *, sequence: int | None = None) -> Mbp10:
    """Row ``i`` of a ``BookBatch`` -> ``mbp10.v1`` (for publishing).

    Levels are kept up to the last one with a price or a size (empty levels, NaN
    price and size 0, only trail); a NaN event price becomes null. Raises
    ``ValidationError`` for a row the wire schema refuses (crossed book, a size
    without a price, an empty level before a present one, ...).
    """

    def side(px: np.ndarray, sz: np.ndarray) -> tuple[list[float], list[float]]:
        used = np.flatnonzero(~np.isnan(px) | (sz != 0))
        n = int(used[-1]) + 1 if len(used) else 0
        return px[:n].tolist(), sz[:n].tolist()

    bpx, bsz = side(batch.bid_px[i], batch.bid_sz[i])
    apx, asz = side(batch.ask_px[i], batch.ask_sz[i])
    price = float(batch.price[i])
    msg: Mbp10 = build(
        Mbp10, symbol=str(batch.symbol[i]), ts_event=int(batch.ts_event[i]),
        ts_recv=None if batch.ts_recv is None else int(batch.ts_recv[i]), sequence=sequence,
        action=str(batch.action[i]), side=str(batch.side[i]),
        price=None if np.isnan(price) else price, size=float(batch.size[i]),
        bid_px=bpx, bid_sz=bsz, ask_px=apx, ask_sz=asz,
    )
    return msg


__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES", "INVALID_TYPE", "INVALID_VALUE", "MISSING_FIELD", "MODELS",
    "NON_FINITE", "REASONS", "SCHEMAS", "SCHEMA_REASONS", "UNEXPECTED_FIELD", "VALUE_REASONS",
    "AgentStateMsg", "ChildOrderMsg", "FillMsg", "ImpactMsg", "KillSwitchMsg", "Mbp10", "Message",
    "MessageSchemaError", "ParentCancelMsg", "ParentOrderMsg", "SolverMsg", "ValidationError", "WireMessage",
    "batch_row_to_mbp10", "books_to_batch", "build", "child_from_model", "child_to_model",
    "decode", "decode_as", "encode", "fill_from_model", "fill_to_model", "parent_from_model",
    "parent_to_model", "parse_iso_ns", "rejection",
]
