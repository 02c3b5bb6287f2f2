"""Logging: [log] section, text and JSON formatters, rate-limited lines, the Kafka outage filter, and the
lifecycle/dead-letter lines a real service writes (in-memory bus)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from agent.app.config import load_config
from agent.app.logs import JsonFormatter, KafkaOutageFilter, TextFormatter, configure_logging
from agent.core.engine import ExecutionEngine
from agent.live.events import RateLimitedLog
from agent.live.metrics import AgentMetrics
from agent.live.service import AgentService
from agent.live.settings import LogSection, ServiceSection, TopicsSection
from feeds.memory import MemoryBus, MemorySink, MemorySource
from feeds.ports import OutRecord
from tests.unit.agent.test_service import make_book, parent, publish_md

TOPICS = TopicsSection()


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _record(logger: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(logger, level, __file__, 1, msg, args, None)


class Captured(io.StringIO):
    handler: logging.Handler


@pytest.fixture
def captured() -> Iterator[Captured]:
    """The process handler of :func:`configure_logging` writing JSON into a buffer."""
    buf = Captured()
    buf.handler = configure_logging(LogSection(format="json", level="INFO", dead_letter_lines=2), stream=buf)
    try:
        yield buf
    finally:
        logging.getLogger().removeHandler(buf.handler)


def _lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.startswith("{")]


def test_log_section_from_env_and_the_secrets_include_the_admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPC_AGENT_LOG__FORMAT", "json")
    monkeypatch.setenv("MPC_AGENT_LOG__LEVEL", "WARNING")
    monkeypatch.setenv("MPC_AGENT_HTTP__ADMIN_TOKEN", "tok-123")
    cfg = load_config()
    assert (cfg.log.format, cfg.log.level) == ("json", "WARNING")
    assert "tok-123" in cfg.secret_values() and "tok-123" not in json.dumps(cfg.masked())
    monkeypatch.setenv("MPC_AGENT_LOG__FORMAT", "yaml")
    with pytest.raises(Exception, match=r"log\.format"):
        load_config()


def test_text_lines_carry_event_fields_as_key_value_and_json_lines_as_keys() -> None:
    rec = _record("agent.live.operations", logging.INFO, "parent %s accepted", "P1")
    rec.event, rec.fields = "parent_accepted", {"parent_id": "P1", "quantity": 3000.0, "note": "a b",
                                                 "limit_price": None, "message": "clash"}
    text = TextFormatter().format(rec)
    assert text.endswith('INFO agent.live.operations: parent P1 accepted parent_id=P1 quantity=3000.0 '
                         'note="a b" message=clash')
    obj = json.loads(JsonFormatter().format(rec))
    assert obj["message"] == "parent P1 accepted" and obj["event"] == "parent_accepted"
    assert obj["quantity"] == 3000.0 and obj["limit_price"] is None and obj["field_message"] == "clash"
    assert obj["ts"].endswith("Z") and obj["level"] == "INFO"


def test_configure_logging_level_and_verbose_and_masks_secrets() -> None:
    buf = io.StringIO()
    h = configure_logging(LogSection(level="WARNING"), verbose=1, secrets=["hunter2"], stream=buf)
    try:
        assert logging.getLogger().level == logging.INFO
        logging.getLogger("agent.test").info("password is hunter2")
        assert "hunter2" not in buf.getvalue() and "password is **********" in buf.getvalue()
    finally:
        logging.getLogger().removeHandler(h)


def test_rate_limited_log_lets_n_through_then_reports_the_suppressed_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    rl = RateLimitedLog(logging.getLogger("agent.test.rl"), lines=3, interval_s=60, clock=clock)
    caplog.set_level(logging.INFO, logger="agent.test.rl")
    passed = [rl.emit("crossed_book", logging.WARNING, "dead_letter", "n=%d", i) for i in range(10)]
    rl.emit("invalid_json", logging.WARNING, "dead_letter", "other reason")
    assert passed == [True] * 3 + [False] * 7
    rl.flush()  # the window has not ended: nothing yet
    assert [r.getMessage() for r in caplog.records] == ["n=0", "n=1", "n=2", "other reason"]
    clock.t += 60
    rl.flush()
    last = caplog.records[-1]
    assert last.event == "log_suppressed" and last.fields["suppressed"] == 7  # type: ignore[attr-defined]
    assert last.fields["key"] == "crossed_book" and len(caplog.records) == 5  # type: ignore[attr-defined]
    assert rl.emit("crossed_book", logging.WARNING, "dead_letter", "new window") is True


def test_kafka_outage_filter_passes_the_first_error_and_closes_with_duration_and_count() -> None:
    clock = Clock()
    flt = KafkaOutageFilter(quiet_s=10, clock=clock)
    unable = "Unable connect to node with id 1: [Errno 111] Connect call failed ('127.0.0.1', 9092)"
    first = _record("aiokafka", logging.ERROR, unable)
    assert flt.filter(first) is True and first.event == "kafka_outage"  # type: ignore[attr-defined]
    assert "the next ones are counted" in first.getMessage()
    for i in range(453):
        clock.t += 0.064
        name = "aiokafka.consumer.fetcher" if i % 3 else "aiokafka"
        assert flt.filter(_record(name, logging.ERROR, "Unable to update metadata from [1]")) is False
    assert flt.filter(_record("aiokafka.consumer.group_coordinator", logging.INFO, "Joined group")) is True
    assert flt.filter(_record("agent.live.service", logging.ERROR, "connection lost")) is True  # not aiokafka
    clock.t += 10.0
    assert flt.filter(_record("aiokafka", logging.ERROR, unable)) is True  # a new outage: the old one closed
    assert flt.outages == 2 and flt.suppressed == 0


async def test_kafka_outage_filter_closes_the_outage_from_the_event_loop(captured: Captured) -> None:
    flt = next(f for f in captured.handler.filters if isinstance(f, KafkaOutageFilter))
    flt.quiet_s = 0.05
    for _ in range(20):
        logging.getLogger("aiokafka").error("Unable connect to node with id 1: refused")
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.15)
    lines = [x for x in _lines(captured) if x.get("event") == "kafka_outage"]
    assert [x["phase"] for x in lines] == ["start", "end"]
    assert lines[1]["suppressed"] == 19 and 0.0 < float(lines[1]["duration_s"]) < 1.0  # type: ignore[arg-type]


async def test_service_logs_lifecycle_events_and_dead_letters_rate_limited(captured: Captured) -> None:
    bus = MemoryBus()
    svc = AgentService(ExecutionEngine(), sink=MemorySink(bus), metrics=AgentMetrics.create(CollectorRegistry()),
                       clock=None, source=MemorySource(bus, [TOPICS.md, TOPICS.parent_orders, TOPICS.fills]),
                       settings=ServiceSection(poll_timeout_ms=10, housekeeping_interval_ms=10),
                       log_settings=LogSection(dead_letter_lines=2))
    from feeds.wire import codec

    p = parent()
    bus.apply([OutRecord(TOPICS.parent_orders, codec.encode(codec.parent_from_model(p)), key=b"FROG")])
    bus.apply([OutRecord(TOPICS.md, b"{not json", key=b"FROG") for _ in range(5)])
    async with svc:
        await svc.run(until_idle=True)
        publish_md(bus, make_book(minutes=4))
        await svc.run(until_idle=True)
        bus.apply([OutRecord(TOPICS.parent_orders, b'{"schema":"parent_cancel.v1","parent_id":"NOPE"}',
                             key=b"FROG"),
                   OutRecord(TOPICS.parent_orders, b'{"schema":"parent_cancel.v1","parent_id":"P1"}', key=b"FROG")])
        await svc.run(until_idle=True)
        await asyncio.sleep(0.1)  # a housekeeping pass sees the cancel
    dlq = bus.records(f"{TOPICS.parent_orders}.dlq")
    assert [r.header("error") for r in dlq] == [b"unknown_parent"]
    lines = _lines(captured)
    events = [x.get("event") for x in lines]
    assert events.count("parent_accepted") == 1 and events.count("parent_cancelled") == 1
    assert events.count("child_sent") == len(bus.values(TOPICS.child_orders)) >= 1
    dead = [x for x in lines if x.get("event") == "dead_letter"]
    assert [x["reason"] for x in dead] == ["invalid_json", "invalid_json", "unknown_parent"]
    assert dead[-1]["message"].startswith("parent order/control message dead-lettered (unknown_parent)")
    cancelled = next(x for x in lines if x.get("event") == "parent_cancelled")
    assert cancelled["parent_id"] == "P1" and cancelled["filled"] + cancelled["unfilled"] == p.quantity
    assert cancelled["skipped"] == {} and cancelled["message"].endswith(", 0 skipped")
