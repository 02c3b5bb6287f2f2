"""KafkaConnection settings (no broker needed): validation and what reaches aiokafka."""

from __future__ import annotations

import ssl

import pydantic
import pytest
from pydantic import SecretStr

from agent.core.errors import ConfigError, FeedError, RetriableFeedError
from feeds.kafka import KafkaConnection, KafkaSink, KafkaSource


def test_connection_plaintext_kwargs_have_no_sasl_and_no_tls() -> None:
    kw = KafkaConnection(bootstrap_servers="h:1", client_id="me").client_kwargs()
    assert kw["bootstrap_servers"] == "h:1" and kw["client_id"] == "me"
    assert kw["ssl_context"] is None and "sasl_mechanism" not in kw


def test_connection_sasl_without_credentials_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="sasl"):
        KafkaConnection(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN")


def test_connection_sasl_password_secret_until_passed_to_aiokafka() -> None:
    conn = KafkaConnection(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="u",
        sasl_password=SecretStr("p4ss"), ssl_check_hostname=False,
    )
    assert "p4ss" not in repr(conn)
    kw = conn.client_kwargs()
    assert kw["sasl_plain_password"] == "p4ss" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(kw["ssl_context"], ssl.SSLContext) and not kw["ssl_context"].check_hostname


def test_connection_frozen_and_unknown_field_rejected() -> None:
    with pytest.raises(pydantic.ValidationError):
        KafkaConnection(bootstrap="h:1")  # type: ignore[call-arg]
    conn = KafkaConnection()
    with pytest.raises(pydantic.ValidationError):
        conn.client_id = "x"  # type: ignore[misc]


async def test_kafka_feeds_used_before_start_raise_feed_error() -> None:
    with pytest.raises(FeedError):
        await KafkaSource("h:1", ["t"], group_id=None).getmany()
    with pytest.raises(FeedError):
        await KafkaSink("h:1").send("t", b"x")
    await KafkaSink("h:1").stop()  # stop before start is a no-op


async def test_kafka_sink_unreachable_broker_raises_retriable_error() -> None:
    sink = KafkaSink(KafkaConnection(bootstrap_servers="127.0.0.1:1", request_timeout_ms=1000))
    with pytest.raises(RetriableFeedError):
        await sink.start()
    await sink.stop()


def test_concurrent_txn_backoff_sets_aiokafkas_retry_of_a_refused_transaction_start() -> None:
    from aiokafka.producer import sender

    from feeds.kafka import CONCURRENT_TXN_BACKOFF_MS, set_concurrent_txn_backoff

    before = sender.BACKOFF_OVERRIDE
    try:
        set_concurrent_txn_backoff(0.5)
        assert sender.BACKOFF_OVERRIDE == 0.0005
        set_concurrent_txn_backoff(CONCURRENT_TXN_BACKOFF_MS)
        assert sender.BACKOFF_OVERRIDE == 0.002
        with pytest.raises(ConfigError, match="concurrent_txn_backoff_ms"):
            set_concurrent_txn_backoff(-1.0)
        with pytest.raises(ConfigError):
            set_concurrent_txn_backoff(float("nan"))
    finally:
        sender.BACKOFF_OVERRIDE = before


def test_exactly_once_service_producers_carry_the_configured_txn_backoff() -> None:
    from prometheus_client import CollectorRegistry

    from agent.app.builder import build_kafka_service, kafka_connection
    from agent.app.config import AgentConfig
    from agent.live.metrics import AgentMetrics, ReliabilityMetrics

    cfg = AgentConfig(kafka={"bootstrap_servers": "h:1", "concurrent_txn_backoff_ms": 0.7})
    reg = CollectorRegistry()
    built = build_kafka_service(cfg, kafka_connection(cfg), AgentMetrics.create(reg), ReliabilityMetrics.create(reg))
    sink = built.service.delivery.producers.factory("g.exec.parent-orders.0")  # not started: no broker
    assert isinstance(sink, KafkaSink) and sink.transactional_id == "g.exec.parent-orders.0"
    assert sink.concurrent_txn_backoff_ms == 0.7
    assert AgentConfig().kafka.concurrent_txn_backoff_ms == 2.0


def test_the_kafka_service_starts_its_decode_worker_with_the_service() -> None:
    """A restart or a takeover begins with a backlog: the Kafka agent's decode worker starts with it."""
    from prometheus_client import CollectorRegistry

    from agent.app.builder import build_kafka_service, kafka_connection
    from agent.app.config import AgentConfig
    from agent.live.metrics import AgentMetrics, ReliabilityMetrics

    cfg = AgentConfig(kafka={"bootstrap_servers": "h:1"})
    reg = CollectorRegistry()
    built = build_kafka_service(cfg, kafka_connection(cfg), AgentMetrics.create(reg), ReliabilityMetrics.create(reg))
    assert built.service.decode_worker_at_start
