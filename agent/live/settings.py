"""Settings of the live shell: service loop, Kafka connection, topic names, HTTP endpoint.

Frozen pydantic sections (``extra="forbid"``, units in field names); the
configuration root :class:`agent.app.config.AgentConfig` composes them with
the core's sections, and the app wires the service from it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


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
    market_state_interval_s: float | None = Field(
        default=None, ge=0, description="exactly once: event time between two market-state records of a "
        "symbol in the state topic. 0 = in every step that fed the symbol's rows, and no row is held past "
        "the transaction that commits its offset: a restarted agent decides exactly as an uninterrupted "
        "one (replayed data). > 0 = latency first: after a crash the estimators resume from a record up "
        "to this old. None = 0 under the event clock, 10 under the wall clock")
    control_wait_ms: float = Field(
        default=2_000.0, ge=0, description="market data wait at most this long for the parent-order and "
        "fill partitions to catch up (parent orders and fills before market data of the same instant)")
    max_batch_records: int = Field(default=5000, gt=0)
    engine_runner: Literal["thread", "loop"] = Field(
        default="thread", description="where engine jobs run (agent.live.engine_runner): 'thread' on a "
        "one-thread executor, the loop free to fetch and publish meanwhile; 'loop' on the event loop's own "
        "thread between its I/O, without GIL hand-offs (more of a core for the engine and the loop "
        "together), a step's engine work blocking the loop for its length")
    decode_worker_min_records: int = Field(
        default=256, ge=0, description="market-data batches of at least this many records are decoded in a "
        "worker process beside the event loop (agent.live.book_decoder); smaller ones inline. 0 = always "
        "inline, no worker process")

    @property
    def market_interval_s(self) -> float:
        """``market_state_interval_s`` resolved (see its description)."""
        if self.market_state_interval_s is not None:
            return self.market_state_interval_s
        return 0.0 if self.clock == "event" else 10.0
    poll_timeout_ms: int = Field(default=50, gt=0)
    watchdog_interval_ms: int = Field(default=500, gt=0)
    no_data_alarm_s: float = Field(default=5.0, gt=0)
    shutdown_timeout_s: float = Field(default=10.0, gt=0)
    max_future_skew_ms: float = Field(
        default=5_000.0, ge=0, description="wall-clock mode: snapshots further ahead of the clock are "
        "rejected (ts_future); 0 = no check")
    max_parent_periods: int = Field(default=100_000, gt=0, description="parent orders with more periods "
                                    "are rejected (too_many_periods)")
    ended_parent_retention_s: float = Field(
        default=600.0, ge=0, description="parents that ended stay listed (GET /parents) and in the state "
        "topic this long, then are dropped from the engine and tombstoned")
    housekeeping_interval_ms: int = Field(
        default=500, gt=0, description="how often parent lifecycle events, the parents gauges, readiness and "
        "the engine heartbeat are refreshed")
    liveness_timeout_s: float = Field(
        default=60.0, gt=0, description="/livez fails when the step loop or the engine thread has not "
        "made progress for this long")
    ready_max_data_age_ms: float | None = Field(
        default=None, gt=0, description="/readyz: newest snapshot of every symbol with an active parent "
        "must be younger than this (None = risk.max_snapshot_age_ms)")


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
    agent_id: str = Field(default="", description="this agent instance's stable id (static group member "
                          "id, the mpc.agent_id header of its records); '' = the host name")
    exactly_once: bool = Field(default=True, description="per step and touched input partition one Kafka "
                               "transaction of that partition's producer: child orders, agent-state records "
                               "and consumed offsets (agent.live.delivery, agent.live.fencing)")
    session_timeout_ms: int = Field(default=6_000, gt=0, description="group session: a dead or stalled "
                                    "agent's partitions move to the others after this (the broker's "
                                    "group.min.session.timeout.ms is 6000 by default); heartbeats every tenth")
    transaction_timeout_ms: int = Field(default=10_000, gt=0, description="the broker aborts a transaction "
                                        "open longer (only when no agent takes its partition over: the new "
                                        "owner's producer aborts it at once); above the longest step")
    retry_backoff_ms: int = Field(default=100, gt=0, description="aiokafka's fixed wait between retries of "
                                  "one request (metadata, coordinator, InitProducerId); reconnecting the "
                                  "service backs off exponentially with jitter, 0.5 s doubling to 15 s")
    concurrent_txn_backoff_ms: float = Field(
        default=2.0, ge=0, description="wait before retrying a transaction the broker refuses because the "
        "previous one's markers are still being written (KAFKA-5477); aiokafka's fixed 20 ms made every "
        "back-to-back transaction cost ~25-30 ms instead of ~8 (bench/txn.py; feeds.kafka.set_concurrent_txn_backoff)")
    idle_offsets_commit_ms: float = Field(
        default=1_000.0, ge=0, description="exactly once: a step with nothing to write but consumed offsets "
        "(market data that closed no period) opens no transaction; its offsets go with its partition's next "
        "transaction, or in one of their own once the oldest waited this long. 0: every step commits its "
        "offsets at once (agent.live.delivery)")
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
    """The HTTP endpoint: /metrics, /livez, /readyz (/healthz), /parents, /kill-switch."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(default=9108, ge=0, le=65535)
    admin_token: SecretStr | None = Field(
        default=None, description="bearer token of POST /kill-switch; None = admin endpoints answer 403")


class LogSection(Section):
    """Logging of the service (``[log]``): format, level and rate limits."""

    format: Literal["text", "json"] = Field(
        default="text", description="'text': one human line per record, event fields as key=value; "
        "'json': one JSON object per line")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="root level; -v/-vv on the command line lower it to INFO/DEBUG")
    dead_letter_lines: int = Field(
        default=10, ge=0, description="at most this many log lines per dead-letter reason and interval; "
        "then one line with the number suppressed")
    rate_limit_interval_s: float = Field(default=60.0, gt=0)
    kafka_quiet_s: float = Field(
        default=10.0, gt=0, description="a Kafka client outage ends after this long without a connection "
        "error; its errors are logged as one line at the start and one with the duration at the end")

    @field_validator("level", "format", mode="before")
    @classmethod
    def _case(cls, v: object) -> object:
        if not isinstance(v, str):
            return v
        return v.strip().upper() if v.strip().upper() in ("DEBUG", "INFO", "WARNING", "ERROR") else v.strip().lower()


