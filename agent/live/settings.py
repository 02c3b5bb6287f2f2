"""Settings of the live shell: service loop, Kafka connection, topic names, HTTP endpoint.

Frozen pydantic sections (``extra="forbid"``, units in field names); the
configuration root :class:`agent.app.config.AgentConfig` composes them with
the core's sections, and the app wires the service from it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Section(BaseModel):
    """Base of every configuration section: frozen, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")


class ServiceSection(Section):
    """How the asyncio shell runs (DESIGN.md section 9)."""

    feed: Literal["kafka", "file"] = "kafka"
    clock: Literal["wall", "event"] = Field(
        default="wall", description="'wall': snapshot age against the wall clock (live); 'event': against "
        "the newest ts_event seen (replayed data published into Kafka)")
    md_conflation: Literal["all", "latest"] = Field(
        default="all", description="'all': every valid row reaches the engine (replay parity); 'latest': "
        "per symbol and batch only trades and the newest book")
    md_buffer_rows: int = Field(
        default=2000, ge=0, description="rows held back while no decision is due, then "
        "fed in one engine call (0 = feed every batch at once)")
    control_wait_ms: float = Field(
        default=2_000.0, ge=0, description="market data wait at most this long for the parent-order and "
        "fill partitions to catch up (parent orders and fills before market data of the same instant)")
    max_batch_records: int = Field(default=5000, gt=0)
    poll_timeout_ms: int = Field(default=50, gt=0)
    watchdog_interval_ms: int = Field(default=500, gt=0)
    no_data_alarm_s: float = Field(default=5.0, gt=0)
    shutdown_timeout_s: float = Field(default=10.0, gt=0)
    max_future_skew_ms: float = Field(
        default=5_000.0, ge=0, description="wall-clock mode: snapshots further ahead of the clock are "
        "rejected (ts_future); 0 = no check")
    max_parent_periods: int = Field(default=100_000, gt=0, description="parent orders with more periods "
                                    "are rejected (too_many_periods)")


class KafkaSection(Section):
    """Broker connection (passed to ``feeds.kafka.KafkaConnection``)."""

    bootstrap_servers: str = "localhost:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = Field(default=None, description="client certificate (mutual TLS)")
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = Field(default=None, description="password of ssl_keyfile")
    ssl_check_hostname: bool = True
    client_id: str = "mpc-agent"
    group_id: str = "mpc-agent"
    agent_id: str = Field(default="", description="this agent instance's stable id (transactional id "
                          "<group_id>.<agent_id>, static group member id); '' = the host name")
    exactly_once: bool = Field(default=True, description="one Kafka transaction per step: child orders, "
                               "agent-state records and consumed offsets (agent.live.delivery)")
    session_timeout_ms: int = Field(default=10_000, gt=0, description="group session: a dead agent's "
                                    "partitions move to the others after this")
    transaction_timeout_ms: int = Field(default=15_000, gt=0)
    retry_backoff_ms: int = Field(default=500, gt=0, description="aiokafka's (fixed) wait between "
                                  "reconnect/metadata attempts while a broker is unreachable")
    max_message_bytes: int = Field(default=1_048_576, gt=0)
    request_timeout_ms: int = Field(default=30_000, gt=0)


class TopicsSection(Section):
    """Topic names (DESIGN.md section 5)."""

    md: str = "md.mbp10"
    parent_orders: str = "exec.parent-orders"
    child_orders: str = "exec.child-orders"
    fills: str = "exec.fills"
    agent_state: str = "exec.agent-state"
    dlq: str = "md.mbp10.dlq"


class HttpSection(Section):
    """The /metrics and /healthz endpoint."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(default=9108, ge=0, le=65535)


