"""Wire codec: every rejection reason, conversions to domain types and to/from BookBatch."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from agent.core.errors import DataError, SchemaError, ValidationError
from agent.core.model import ChildOrder, Fill, ImpactParams, ParentOrder, SolverInfo
from feeds.book import BookBatch
from feeds.wire.codec import (
    REASONS,
    SCHEMAS,
    ChildOrderMsg,
    Mbp10,
    MessageSchemaError,
    ParentOrderMsg,
    batch_row_to_mbp10,
    books_to_batch,
    build,
    child_from_model,
    child_to_model,
    decode,
    decode_as,
    encode,
    fill_from_model,
    fill_to_model,
    parent_from_model,
    parent_to_model,
    parse_iso_ns,
)
from tests.unit.feeds.wire_samples import T0, sample_messages

BOOK: dict[str, Any] = {
    "schema": "mbp10.v1", "symbol": "FROG", "ts_event": T0, "action": "A", "side": "B",
    "price": 10.0, "size": 5, "bid_px": [10.0, 9.9], "bid_sz": [1, 2], "ask_px": [10.1, 10.2],
    "ask_sz": [3, 4],
}
PARENT: dict[str, Any] = {
    "schema": "parent_order.v1", "parent_id": "P1", "symbol": "FROG", "side": "sell",
    "quantity": 1000, "start": "2025-04-03T13:30:00Z", "end": "2025-04-03T14:30:00Z",
    "period_s": 60,
}


def _raw(base: dict[str, Any], **change: Any) -> bytes:
    d = {**base, **change}
    return json.dumps({k: v for k, v in d.items() if v is not ...}).encode()


def _reason(raw: bytes | None, **kw: Any) -> str:
    with pytest.raises(DataError) as err:
        decode(raw, **kw)
    reason = err.value.reason  # type: ignore[attr-defined]
    assert reason in REASONS
    return str(reason)


def test_encode_decode_every_schema_roundtrips_equal_and_compact() -> None:
    for _, msg in sample_messages():
        raw = encode(msg)
        assert b" " not in raw and raw.startswith(b'{"schema":"' + msg.SCHEMA.encode())
        assert decode(raw) == msg
    assert {m.SCHEMA for _, m in sample_messages()} == set(SCHEMAS)


CASES: list[tuple[bytes, str, type[Exception]]] = [
    (b"\xff\xfe{}", "invalid_utf8", SchemaError),
    (b'{"schema": "mbp10.v1",', "invalid_json", SchemaError),
    (b"[1, 2]", "not_an_object", SchemaError),
    (b'{"symbol": "FROG"}', "missing_field", SchemaError),
    (b'{"schema": "mbp10.v9"}', "unknown_schema", SchemaError),
    (b'{"schema": 3}', "unknown_schema", SchemaError),
    (_raw(BOOK, symbol=...), "missing_field", SchemaError),
    (_raw(BOOK, colour="red"), "unexpected_field", SchemaError),
    (_raw(BOOK, size="5"), "invalid_type", SchemaError),
    (_raw(BOOK, ts_event=1.5), "invalid_type", SchemaError),
    (_raw(BOOK, ts_event=True), "invalid_type", SchemaError),
    (_raw(BOOK).replace(b'"price": 10.0', b'"price": NaN'), "non_finite", ValidationError),
    (_raw(BOOK).replace(b'"size": 5', b'"size": Infinity'), "non_finite", ValidationError),
    (_raw(BOOK).replace(b"10.2]", b"1e999]"), "non_finite", ValidationError),
    (_raw(BOOK, bid_px=[10.0, -9.9]), "non_positive_price", ValidationError),
    (_raw(BOOK, action="T", price=0.0), "non_positive_price", ValidationError),
    (_raw(BOOK, action="T", price=...), "non_positive_price", ValidationError),
    (_raw(BOOK, ask_sz=[3, -4]), "negative_size", ValidationError),
    (_raw(BOOK, size=-1), "negative_size", ValidationError),
    (_raw(BOOK, ask_px=[9.95, 10.2]), "crossed_book", ValidationError),
    (_raw(BOOK, ask_px=[10.0, 10.2]), "locked_book", ValidationError),
    (_raw(BOOK, bid_px=[9.9, 10.0]), "levels_out_of_order", ValidationError),
    (_raw(BOOK, ask_px=[10.1, 10.1]), "levels_out_of_order", ValidationError),
    (_raw(BOOK, bid_sz=[1]), "levels_mismatch", ValidationError),
    (_raw(BOOK, bid_px=[10 - i / 10 for i in range(11)], bid_sz=[1] * 11), "too_many_levels",
     ValidationError),
    (_raw(BOOK, side="X"), "invalid_value", ValidationError),
    (_raw(BOOK, action="Q"), "invalid_value", ValidationError),
    (_raw(BOOK, symbol=""), "invalid_value", ValidationError),
    (_raw(BOOK, ts_event=-1), "invalid_timestamp", ValidationError),
    (_raw(BOOK, ts_event=2**63), "invalid_timestamp", ValidationError),
    (_raw(PARENT, quantity=0), "non_positive_quantity", ValidationError),
    (_raw(PARENT, quantity=-5), "non_positive_quantity", ValidationError),
    (_raw(PARENT, period_s=0), "non_positive_quantity", ValidationError),
    (_raw(PARENT, end="2025-04-03T13:30:00Z"), "end_before_start", ValidationError),
    (_raw(PARENT, start=T0 + 10, end=T0), "end_before_start", ValidationError),
    (_raw(PARENT, max_participation=0), "invalid_participation", ValidationError),
    (_raw(PARENT, max_participation=1.5), "invalid_participation", ValidationError),
    (_raw(PARENT, risk_aversion=-1), "invalid_value", ValidationError),
    (_raw(PARENT, limit_price=0), "non_positive_price", ValidationError),
    (_raw(PARENT, side="B"), "invalid_value", ValidationError),
    (_raw(PARENT, start="2025-04-03T13:30:00"), "invalid_timestamp", ValidationError),
    (_raw(PARENT, start="yesterday"), "invalid_timestamp", ValidationError),
    (_raw(PARENT, start=1.7e18), "invalid_type", SchemaError),
]


@pytest.mark.parametrize(("raw", "reason", "kind"), CASES)
def test_decode_bad_message_raises_with_stable_reason(
    raw: bytes, reason: str, kind: type[Exception]
) -> None:
    with pytest.raises(kind) as err:
        decode(raw)
    assert err.value.reason == reason  # type: ignore[attr-defined]
    assert reason in str(err.value)


def test_decode_null_value_tombstone_rejected() -> None:
    assert _reason(None) == "null_value"


def test_decode_as_returns_the_model_and_refuses_other_schemas() -> None:
    book = decode_as(_raw(BOOK), Mbp10)
    assert book.bid_px == [10.0, 9.9]
    assert _reason(_raw(BOOK), expected={"fill.v1"}) == "unexpected_schema"
    with pytest.raises(MessageSchemaError) as err:
        decode_as(_raw(BOOK), ParentOrderMsg)
    assert err.value.reason == "unexpected_schema"


def test_decode_oversize_rejected_before_parsing() -> None:
    raw = _raw(BOOK, symbol="F" * 200)
    assert _reason(raw, max_bytes=100) == "oversize"
    assert isinstance(decode(raw, max_bytes=len(raw)), Mbp10)


def test_decode_schema_not_expected_on_topic_rejected() -> None:
    assert _reason(_raw(BOOK), expected={"fill.v1"}) == "unexpected_schema"
    assert isinstance(decode(_raw(BOOK), expected={"mbp10.v1"}), Mbp10)


def test_decode_child_order_with_foreign_id_rejected() -> None:
    child = next(m for _, m in sample_messages() if m.SCHEMA == "child_order.v1")
    d = json.loads(encode(child))
    d["child_order_id"] = "P1:4"
    assert _reason(json.dumps(d).encode()) == "invalid_child_order_id"


def test_decode_every_reason_is_exercised_by_a_test() -> None:
    tested = {reason for _, reason, _ in CASES} | {
        "oversize", "unexpected_schema", "invalid_child_order_id", "null_value"}
    assert len(set(REASONS)) == len(REASONS)
    assert tested == set(REASONS)


def test_encode_oversize_raises() -> None:
    msg = decode(_raw(BOOK))
    with pytest.raises(MessageSchemaError) as err:
        encode(msg, max_bytes=50)
    assert err.value.reason == "oversize"


def test_parent_order_iso_and_ns_times_agree_and_convert_to_model() -> None:
    iso = decode(_raw(PARENT, start="2025-04-03 09:30:00.000000001-04:00"))
    assert isinstance(iso, ParentOrderMsg)
    assert iso.start == T0 + 1 and iso.end == T0 + 3600 * 10**9
    order = parent_to_model(iso, lot_size=100)
    assert order == ParentOrder("P1", "FROG", "sell", 1000.0, T0 + 1, T0 + 3600 * 10**9, 60.0,
                                lot_size=100)
    back = parent_from_model(order)
    assert parent_to_model(back, lot_size=100) == order
    assert decode(encode(back)) == back


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:01.5+01:00", -3_598_500_000_000),
        ("2025-04-03T13:30:00.123456789Z", T0 + 123_456_789),
        ("2025-04-03T09:30:00-0400", T0),
    ],
)
def test_parse_iso_ns_exact_nanoseconds(text: str, ns: int) -> None:
    assert parse_iso_ns(text) == ns


def test_child_order_model_roundtrip_keeps_plan_solver_impact() -> None:
    order = ChildOrder(
        child_order_id="P1:2", parent_id="P1", symbol="FROG", side="sell", quantity=300.0,
        limit_price=9.5, period_index=2, ts_event=T0, ts_init=T0 + 7, remaining_before=900.0,
        plan=(300.0, 300.0, 300.0), solver=SolverInfo("osqp", "solved", 12, 85.0),
        impact=ImpactParams(beta=0.01, gamma=1e-5),
    )
    msg = child_from_model(order)
    assert isinstance(msg, ChildOrderMsg)
    assert child_to_model(decode(encode(msg))) == order  # type: ignore[arg-type]
    bare = ChildOrder("P1:0", "P1", "FROG", "buy", 10.0, 10.0, 0, T0, T0, 10.0)
    assert child_to_model(child_from_model(bare)) == bare
    with pytest.raises(ValidationError) as err:
        child_from_model(ChildOrder("P1:9", "P1", "FROG", "buy", 10.0, 10.0, 0, T0, T0, 10.0))
    assert err.value.reason == "invalid_child_order_id"


def test_fill_model_roundtrip_and_bad_fill_rejected() -> None:
    fill = Fill("F9", "P1:2", "P1", 120.0, 9.51, T0 + 5)
    assert fill_to_model(decode(encode(fill_from_model(fill)))) == fill  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as err:
        fill_from_model(Fill("F9", "P1:2", "P1", float("nan"), 9.51, T0))
    assert err.value.reason == "non_finite"


def _batch() -> BookBatch:
    nan = np.nan
    bid_px = np.full((3, 10), nan)
    bid_sz = np.zeros((3, 10))
    ask_px = np.full((3, 10), nan)
    ask_sz = np.zeros((3, 10))
    bid_px[0, :3], bid_sz[0, :3] = [10.0, 9.9, 9.8], [1, 2, 3]
    ask_px[0, :2], ask_sz[0, :2] = [10.1, 10.2], [4, 5]
    bid_px[1, :10], bid_sz[1, :10] = 10.0 - np.arange(10) / 10, np.arange(1, 11)
    ask_px[1, :1], ask_sz[1, :1] = [10.1], [7]
    ask_px[2, :2], ask_sz[2, :2] = [10.3, 10.4], [1, 1]  # empty bid side
    return BookBatch(
        ts_event=np.array([T0, T0 + 1, T0 + 2]), symbol=np.array(["FROG"] * 3),
        action=np.array(["A", "T", "R"]), side=np.array(["B", "A", "N"]),
        price=np.array([10.0, 10.1, nan]), size=np.array([1.0, 7.0, 0.0]),
        bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px, ask_sz=ask_sz,
        ts_recv=np.array([T0 + 5, T0 + 6, T0 + 7]),
    )


def test_books_to_batch_of_batch_rows_reproduces_batch() -> None:
    batch = _batch()
    msgs = [batch_row_to_mbp10(batch, i) for i in range(len(batch))]
    assert [len(m.bid_px) for m in msgs] == [3, 10, 0]
    assert msgs[2].price is None
    again = books_to_batch([decode(encode(m)) for m in msgs])  # type: ignore[misc]
    for name in ("ts_event", "ts_recv", "symbol", "action", "side", "price", "size",
                 "bid_px", "bid_sz", "ask_px", "ask_sz"):
        np.testing.assert_array_equal(getattr(again, name), getattr(batch, name), err_msg=name)
    assert not again.validate().bad.any()


def test_books_to_batch_empty_and_missing_ts_recv() -> None:
    assert len(books_to_batch([])) == 0
    msgs = [build(Mbp10, **{**BOOK, "schema": "mbp10.v1"}), build(Mbp10, **BOOK, ts_recv=T0)]
    assert books_to_batch(msgs).ts_recv is None
    assert books_to_batch(msgs).levels == 10


def test_batch_row_to_mbp10_crossed_row_raises_validation_error() -> None:
    batch = _batch()
    batch.ask_px[0, 0] = 9.0
    with pytest.raises(ValidationError) as err:
        batch_row_to_mbp10(batch, 0)
    assert err.value.reason == "crossed_book"
