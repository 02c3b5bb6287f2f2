"""The runtime kill switch: held parents in the engine, kill_switch.v1 on the wire and at the intake,
the process-wide switch (changes, stale commands, state-topic record, newest wins on restore)."""

from __future__ import annotations

import itertools
import json
import logging

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from agent.core.engine import ExecutionEngine
from agent.core.errors import DataError
from agent.core.model import Fill, ParentOrder
from agent.live.intake import Intake
from agent.live.kill_switch import KILL_SWITCH_KEY, KillSwitch, KillSwitchCommand, parse_record
from agent.live.metrics import AgentMetrics
from agent.live.settings import TopicsSection
from agent.live.state_topic import StateTracker, restore
from feeds.ports import Record
from feeds.wire import codec
from feeds.wire.messages import KillSwitchMsg
from tests.unit.agent.books import NS, T0, ladder_book

PERIOD = 60 * NS
TOPICS = TopicsSection()


def _drive(eng: ExecutionEngine, parent: ParentOrder, minutes: int, kill_periods: set[int]) -> list[int]:
    """Feed ``minutes`` of book one period at a time, the switch on during ``kill_periods``; fill every
    child in full. Returns the period index of every child order."""
    book = ladder_book(T0 + np.arange(minutes * 60) * NS, trade_every=5, trade_size=500.0)
    cuts = np.searchsorted(book.ts_event, [T0 + k * PERIOD for k in range(minutes + 1)])
    out: list[int] = []
    for k, (a, b) in enumerate(itertools.pairwise(cuts.tolist())):
        eng.kill_switch = k in kill_periods
        for c in eng.on_book(book[a:b]).children:
            out.append(c.period_index)
            eng.on_fill(Fill(c.child_order_id + "/f", c.child_order_id, c.parent_id, c.quantity, c.limit_price,
                             c.ts_event))
    return out


def test_a_held_parent_is_not_expired_and_re_plans_its_remainder_when_the_switch_goes_off() -> None:
    eng = ExecutionEngine()
    parent = ParentOrder("P1", "TEST", "buy", 3000.0, T0, T0 + 10 * PERIOD, 60.0)
    eng.submit(parent)
    periods = _drive(eng, parent, 12, kill_periods={0, 1, 2, 3})
    assert eng.counters["skipped:kill_switch"] == 4
    assert periods == list(range(4, 10))  # nothing while on, one child per period after
    st = eng.parents["P1"]
    assert st.status == "completed" and st.filled == pytest.approx(3000.0)  # the six periods left took it all


def test_a_parent_held_to_its_end_expires_at_the_end_and_not_before() -> None:
    eng = ExecutionEngine()
    parent = ParentOrder("P1", "TEST", "buy", 3000.0, T0, T0 + 10 * PERIOD, 60.0)
    eng.submit(parent)
    assert _drive(eng, parent, 10, kill_periods=set(range(10))) == []
    assert eng.parents["P1"].status == "active" and eng.parents["P1"].next_period == 10
    assert _drive(eng, parent, 12, kill_periods=set(range(12))) == []
    assert eng.parents["P1"].status == "expired" and eng.parents["P1"].remaining == 3000.0


def test_kill_switch_message_is_strict() -> None:
    ok = codec.decode(b'{"schema": "kill_switch.v1", "on": true, "reason": "venue halt"}')
    assert isinstance(ok, KillSwitchMsg) and ok.on is True and ok.reason == "venue halt"
    for bad, reason in [(b'{"schema": "kill_switch.v1", "on": 1, "reason": "x"}', "invalid_type"),
                        (b'{"schema": "kill_switch.v1", "on": "true", "reason": "x"}', "invalid_type"),
                        (b'{"schema": "kill_switch.v1", "on": true}', "missing_field"),
                        (b'{"schema": "kill_switch.v1", "on": true, "reason": ""}', "invalid_value"),
                        (b'{"schema": "kill_switch.v1", "on": true, "reason": "x", "who": "me"}', "unexpected_field")]:
        with pytest.raises(DataError) as err:
            codec.decode(bad)
        assert err.value.reason == reason, bad  # type: ignore[attr-defined]


def _record(topic: str, value: bytes, offset: int = 0) -> Record:
    return Record(topic, 0, offset, b"FROG", value)


def test_intake_turns_kill_switch_messages_into_commands_only_on_the_parent_orders_topic() -> None:
    metrics = AgentMetrics.create(CollectorRegistry())
    intake = Intake(TOPICS, metrics, clock=lambda: 1_000)
    on = b'{"schema": "kill_switch.v1", "on": true, "reason": "halt", "source": "desk"}'
    inb = intake.take({TOPICS.parent_orders: [_record(TOPICS.parent_orders, on, 7)],
                       TOPICS.md: [_record(TOPICS.md, on, 3)]})
    assert inb.control == [] and not inb.empty
    assert inb.kill == [KillSwitchCommand(True, "halt", f"desk via topic {TOPICS.parent_orders}[0]@7", 1_000)]
    assert [dict(r.headers)["error"] for r in inb.dlq] == [b"unexpected_schema"]  # not on market data


def test_intake_refuses_a_parent_order_with_the_reserved_kill_switch_id() -> None:
    metrics = AgentMetrics.create(CollectorRegistry())
    p = ParentOrder(KILL_SWITCH_KEY, "FROG", "buy", 100.0, T0, T0 + PERIOD, 60.0)
    inb = Intake(TOPICS, metrics).take({TOPICS.parent_orders: [
        _record(TOPICS.parent_orders, codec.encode(codec.parent_from_model(p)))]})
    assert inb.control == [] and [dict(r.headers)["error"] for r in inb.dlq] == [b"invalid_value"]


def test_switch_logs_each_flip_once_and_ignores_repeats(caplog: pytest.LogCaptureFixture) -> None:
    metrics = AgentMetrics.create(CollectorRegistry())
    clock = iter(range(100, 10_000, 100))
    ks = KillSwitch(gauge=metrics.kill_switch, clock=lambda: next(clock))
    caplog.set_level(logging.INFO, logger="agent.live.kill_switch")
    on = ks.command(True, "halt", "test")
    assert ks.set(on) is True and ks.on and metrics.registry.get_sample_value("mpc_agent_kill_switch") == 1.0
    assert ks.set(on) is False  # the same command again (queued for the state topic): silent
    assert ks.set(ks.command(True, "again", "test")) is False
    assert ks.set(ks.command(False, "resume", "test")) is True
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events == ["kill_switch", "kill_switch_unchanged", "kill_switch"]
    assert caplog.records[-1].fields["previous_reason"] == "halt"  # type: ignore[attr-defined]
    assert metrics.registry.get_sample_value("mpc_agent_kill_switch") == 0.0


def test_configured_on_is_a_change_made_at_start_up() -> None:
    ks = KillSwitch(True, clock=lambda: 5)
    assert ks.on and ks.state.source == "config" and ks.state.ts_ns == 5
    assert KillSwitch().state.ts_ns == 0  # the default off: never changed, nothing to persist


def test_state_topic_record_round_trips_and_the_newer_change_wins_on_restore() -> None:
    writer = KillSwitch(clock=lambda: 2_000)
    writer.set(writer.command(True, "halt", "http 10.0.0.1"))
    eng = ExecutionEngine()
    tracker = StateTracker(eng, "a1", kill_switch=writer)
    out = dict(tracker.collect())
    assert json.loads(out[KILL_SWITCH_KEY]) == {"schema": "kill_switch.v1", "on": True, "reason": "halt",
                                                "ts_event": 2_000, "source": "http 10.0.0.1"}
    assert tracker.collect() == []  # written once
    record = json.loads(out[KILL_SWITCH_KEY])
    assert parse_record(record) == KillSwitchCommand(True, "halt", "http 10.0.0.1", 2_000)

    older = KillSwitch(clock=lambda: 1_000)  # a restarted agent: default off, never changed
    eng2 = ExecutionEngine()
    t2 = StateTracker(eng2, "a2", kill_switch=older)
    restore(eng2, t2, {KILL_SWITCH_KEY: record}, owns=lambda s: True)
    assert older.on and eng2.kill_switch is True and t2.collect() == []  # adopted, not re-written

    times = iter((2_500, 3_000))
    newer = KillSwitch(clock=lambda: next(times))  # on, then off here after the record was written
    newer.set(newer.command(True, "halt", "topic"))
    newer.set(newer.command(False, "resume", "topic"))
    eng3 = ExecutionEngine()
    t3 = StateTracker(eng3, "a3", kill_switch=newer)
    restore(eng3, t3, {KILL_SWITCH_KEY: record}, owns=lambda s: True)
    assert not newer.on and eng3.kill_switch is False
    assert [k for k, _ in t3.collect()] == [KILL_SWITCH_KEY]  # the newer local state goes to the topic


def test_a_bad_kill_switch_record_is_ignored_with_an_error(caplog: pytest.LogCaptureFixture) -> None:
    assert parse_record({"schema": "kill_switch.v1", "on": "yes", "reason": "x"}) is None
    assert "ignoring the kill-switch record" in caplog.text
