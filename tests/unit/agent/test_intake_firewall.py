"""agent.live.intake beyond the wire schema: clock checks, impossible parent orders, fills, oversize DLQ copies."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry

from agent.core.engine import EngineSettings, ExecutionEngine
from agent.core.model import Fill
from agent.live.engine_step import EngineDriver
from agent.live.intake import (
    DLQ_OVERSIZE_KEEP_BYTES,
    DUPLICATE_PARENT,
    PARENT_DONE,
    PARENT_EXPIRED,
    TOO_MANY_PERIODS,
    TS_FUTURE,
    UNKNOWN_PARENT,
    Intake,
)
from agent.live.metrics import AgentMetrics
from agent.live.settings import ServiceSection, TopicsSection
from feeds.ports import DLQ_ERROR_HEADER, Record

NS = 1_000_000_000
NOW = 1_743_687_000 * NS
T = TopicsSection()


def _intake(clock: int | None = NOW, **kw: object) -> tuple[Intake, AgentMetrics]:
    m = AgentMetrics.create(CollectorRegistry(auto_describe=True))
    return Intake(T, m, clock=None if clock is None else (lambda: clock), **kw), m  # type: ignore[arg-type]


def _book(ts: int) -> bytes:
    return json.dumps({"schema": "mbp10.v1", "symbol": "FROG", "ts_event": ts, "action": "A", "side": "B",
                       "price": 10.0, "size": 1.0, "bid_px": [10.0], "bid_sz": [5.0], "ask_px": [10.01],
                       "ask_sz": [5.0]}).encode()


def _parent(**kw: object) -> bytes:
    d: dict[str, object] = {"schema": "parent_order.v1", "parent_id": "P1", "symbol": "FROG", "side": "buy",
                            "quantity": 100.0, "start": NOW, "end": NOW + 600 * NS, "period_s": 60.0}
    d.update(kw)
    return json.dumps(d).encode()


def _fill(fid: str, parent: str = "P1", child: str | None = None) -> bytes:
    return json.dumps({"schema": "fill.v1", "fill_id": fid, "child_order_id": child or f"{parent}:0",
                       "parent_id": parent, "quantity": 10.0, "price": 10.0, "ts_event": NOW}).encode()


def _recs(topic: str, values: list[bytes]) -> list[Record]:
    return [Record(topic, 0, i, None, v) for i, v in enumerate(values)]


def _errors(dlq: list) -> list[str]:  # type: ignore[type-arg]
    return [dict(o.headers)[DLQ_ERROR_HEADER].decode() for o in dlq]


def test_intake_snapshot_ahead_of_clock_is_rejected_ts_future_and_does_not_block_later_rows() -> None:
    intake, m = _intake(max_future_skew_ms=1000)
    vals = [_book(NOW - 5 * NS), _book(NOW + 3600 * NS), _book(NOW - 4 * NS), _book(NOW + 2 * NS)]
    inb = intake.take({T.md: _recs(T.md, vals)})
    assert inb.md is not None
    assert inb.md.ts_event.tolist() == [NOW - 5 * NS, NOW - 4 * NS]
    assert _errors(inb.dlq) == [TS_FUTURE, TS_FUTURE]
    assert [dict(o.headers)["source.offset"] for o in inb.dlq] == [b"1", b"3"]
    assert m.registry.get_sample_value("mpc_agent_snapshots_rejected_total", {"reason": TS_FUTURE}) == 2


def test_intake_event_time_mode_has_no_future_check() -> None:
    intake, _ = _intake(clock=None)
    inb = intake.take({T.md: _recs(T.md, [_book(NOW + 3600 * NS)])})
    assert inb.md is not None and len(inb.md) == 1 and not inb.dlq


def test_intake_impossible_parent_orders_are_rejected_with_their_reason() -> None:
    intake, m = _intake(max_parent_periods=1000)
    vals = [
        _parent(period_s=1e-6),  # period below 1 ms
        _parent(period_s=0.01, end=NOW + 3600 * NS),  # 360,000 periods
        _parent(start=NOW - 7200 * NS, end=NOW - 3600 * NS),  # already over
        _parent(start=NOW + 30 * 86400 * NS, end=NOW + 30 * 86400 * NS + 600 * NS),  # a month ahead
        _parent(),
    ]
    inb = intake.take({T.parent_orders: _recs(T.parent_orders, vals)})
    assert _errors(inb.dlq) == ["invalid_value", TOO_MANY_PERIODS, PARENT_EXPIRED, TS_FUTURE]
    assert {o.topic for o in inb.dlq} == {f"{T.parent_orders}.dlq"}
    assert [p.parent_id for p in inb.control] == ["P1"]  # type: ignore[union-attr]
    assert m.registry.get_sample_value("mpc_agent_messages_rejected_total",
                                       {"topic": T.parent_orders, "reason": TOO_MANY_PERIODS}) == 1


def test_intake_fill_whose_child_id_names_another_parent_is_rejected() -> None:
    intake, _ = _intake()
    inb = intake.take({T.fills: _recs(T.fills, [_fill("f1", child="P2:0"), _fill("f2")])})
    assert _errors(inb.dlq) == ["invalid_child_order_id"]
    assert [f.fill_id for f in inb.fills] == ["f2"] and len(inb.fill_records) == 1


def test_intake_oversize_dlq_copy_is_truncated_and_keeps_the_original_length() -> None:
    intake, _ = _intake(max_message_bytes=10_000)
    big = b'{"schema":"fill.v1","pad":"' + b"x" * 50_000 + b'"}'
    inb = intake.take({T.fills: _recs(T.fills, [big])})
    (out,) = inb.dlq
    assert out.value is not None and len(out.value) == DLQ_OVERSIZE_KEEP_BYTES
    h = dict(out.headers)
    assert h[DLQ_ERROR_HEADER] == b"oversize" and h["error.original_bytes"] == str(len(big)).encode()


def test_driver_refuses_unknown_parent_done_parent_and_duplicate_parent_and_intake_dead_letters_them() -> None:
    intake, m = _intake()
    engine = ExecutionEngine(EngineSettings())
    driver = EngineDriver(engine, ServiceSection())
    first = intake.take({T.parent_orders: _recs(T.parent_orders, [_parent(quantity=10.0)])})
    assert not driver.step(first).rejected
    engine.on_fill(Fill("f0", "P1:0", "P1", 10.0, 10.0, NOW))  # P1 now completed
    assert engine.parents["P1"].status == "completed"
    inb = intake.take({
        T.parent_orders: _recs(T.parent_orders, [_parent()]),
        T.fills: _recs(T.fills, [_fill("f1", parent="NOPE"), _fill("f2"), _fill("f2")]),
    })
    res = driver.step(inb)
    assert res.rejected == [("control", 0, DUPLICATE_PARENT), ("fill", 0, UNKNOWN_PARENT), ("fill", 1, PARENT_DONE),
                            ("fill", 2, PARENT_DONE)]
    dlq = intake.dead_letters(inb, res.rejected)
    assert _errors(dlq) == [DUPLICATE_PARENT, UNKNOWN_PARENT, PARENT_DONE, PARENT_DONE]
    assert m.registry.get_sample_value("mpc_agent_messages_rejected_total",
                                       {"topic": T.fills, "reason": PARENT_DONE}) == 2


def test_driver_duplicate_fill_of_a_live_parent_is_counted_not_rejected() -> None:
    intake, _ = _intake()
    driver = EngineDriver(ExecutionEngine(EngineSettings()), ServiceSection())
    driver.step(intake.take({T.parent_orders: _recs(T.parent_orders, [_parent()])}))
    res = driver.step(intake.take({T.fills: _recs(T.fills, [_fill("f1"), _fill("f1")])}))
    assert (res.fills_applied, res.fills_duplicate, res.rejected) == (1, 1, [])


def test_driver_late_fill_of_a_cancelled_parent_is_still_booked() -> None:
    intake, _ = _intake()
    engine = ExecutionEngine(EngineSettings())
    driver = EngineDriver(engine, ServiceSection())
    driver.step(intake.take({T.parent_orders: _recs(T.parent_orders, [_parent()])}))
    engine.cancel("P1")
    res = driver.step(intake.take({T.fills: _recs(T.fills, [_fill("f1")])}))
    assert (res.fills_applied, res.rejected) == (1, [])
    assert engine.parents["P1"].filled == 10.0
