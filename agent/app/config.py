"""Service configuration: one ``pydantic-settings`` root, frozen sections.

Sources, highest precedence first: explicit overrides (CLI flags), environment
variables ``MPC_AGENT_<SECTION>__<FIELD>`` (e.g. ``MPC_AGENT_RISK__MAX_SNAPSHOT_AGE_MS=500``),
an optional TOML file (``[risk] max_snapshot_age_ms = 500``), the defaults.
Physical quantities carry their unit in the field name (``_s``, ``_ms``,
``_bps``, ``_shares``, ``_usd``, ``_frac``); every field has a default.

The configuration is built once, by the CLI (:func:`load_config`), and passed
down; there is no module-level settings object. The decision core never sees
pydantic: :meth:`AgentConfig.engine_settings` maps the sections onto the frozen
dataclasses ``agent.core.engine.EngineSettings`` / ``agent.core.risk.RiskLimits`` /
``agent.core.mpc.qp.SolverSettings``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agent.core.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from agent.core.engine import EngineSettings

ENV_PREFIX = "MPC_AGENT_"
ENV_DELIMITER = "__"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")


class ServiceSection(_Section):
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


class KafkaSection(_Section):
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


class TopicsSection(_Section):
    """Topic names (DESIGN.md section 5)."""

    md: str = "md.mbp10"
    parent_orders: str = "exec.parent-orders"
    child_orders: str = "exec.child-orders"
    fills: str = "exec.fills"
    agent_state: str = "exec.agent-state"
    dlq: str = "md.mbp10.dlq"


class FileFeedSection(_Section):
    """``--feed file``: replay a data file through the live service."""

    data_paths: tuple[str, ...] = ()
    format: Literal["auto", "mbp10-csv", "dbn", "lobster", "parquet"] = "auto"
    symbol: str | None = None
    speed_x: float = Field(default=0.0, ge=0, description="pace in multiples of real time; 0 = as fast as possible")
    batch_rows: int = Field(default=2000, gt=0)
    sink: Literal["jsonl", "kafka"] = "jsonl"
    jsonl_path: str = "out/live/child-orders.jsonl"
    fills_jsonl_path: str | None = Field(default=None, description="None: fills.jsonl beside jsonl_path")
    latency_ms: float = Field(default=5.0, ge=0)
    recovery_half_life_s: float = Field(default=30.0, ge=0)
    fee_bps: float = 0.0


class ParentSection(_Section):
    """An optional parent order given by config/flags (file feed), or a JSON file path."""

    json_path: str | None = None
    parent_id: str = "P1"
    symbol: str | None = None
    side: Literal["buy", "sell"] = "buy"
    quantity_shares: float = Field(default=0.0, ge=0, description="0 = no parent order from config")
    start: str | None = Field(default=None, description="ISO-8601, HH:MM (exchange time zone) or int ns")
    end: str | None = None
    tz: str = "America/New_York"
    period_s: float = Field(default=60.0, gt=0)
    max_participation_frac: float | None = Field(default=None, gt=0, le=1)
    risk_aversion: float = Field(default=0.0, ge=0)
    limit_price_usd: float | None = Field(default=None, gt=0)
    lot_shares: float = Field(default=1.0, gt=0)


class HttpSection(_Section):
    """The /metrics and /healthz endpoint."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(default=9108, ge=0, le=65535)


class EngineSection(_Section):
    """``agent.core.engine.EngineSettings``."""

    max_participation_frac: float = Field(default=0.2, gt=0, le=1)
    impact_half_life_s: float = Field(default=300.0, gt=0)
    volume_half_life_s: float = Field(default=1800.0, gt=0)
    volatility_half_life_s: float = Field(default=1800.0, gt=0)
    penalty_ticks: float = Field(default=3.0, ge=0)
    tick_usd: float = Field(default=0.01, gt=0)
    size_grid_multiple_x: float = Field(default=4.0, gt=0)
    profile_path: str | None = Field(
        default=None, description="intraday profiles JSON from `mpc-agent profile` (None: flat)")


class RiskSection(_Section):
    """``agent.core.risk.RiskLimits`` plus the kill switch."""

    max_snapshot_age_ms: float = Field(default=2_000.0, gt=0)
    max_child_shares: float = Field(default=float("inf"), gt=0)
    limit_slippage_bps: float = Field(default=10.0, ge=0)
    kill_switch: bool = False


class SolverSection(_Section):
    """``agent.core.mpc.qp.SolverSettings`` (OSQP); fields absent there are ignored."""

    eps_abs: float = Field(default=1e-3, gt=0)
    eps_rel: float = Field(default=1e-3, gt=0)
    max_iter: int = Field(default=4000, gt=0)
    time_limit_s: float = Field(default=0.05, ge=0, description="0 = no limit; keep below the period")
    polish: bool = True
    adaptive_rho: bool = True


class AgentConfig(BaseSettings):
    """Root of the configuration (see the module docstring for the sources)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER, extra="forbid", frozen=True,
        case_sensitive=False,
    )

    service: ServiceSection = ServiceSection()
    kafka: KafkaSection = KafkaSection()
    topics: TopicsSection = TopicsSection()
    file_feed: FileFeedSection = FileFeedSection()
    parent: ParentSection = ParentSection()
    http: HttpSection = HttpSection()
    engine: EngineSection = EngineSection()
    risk: RiskSection = RiskSection()
    solver: SolverSection = SolverSection()

    # ------------------------------------------------------------ mapping
    def engine_settings(self) -> EngineSettings:
        """The core's frozen dataclasses built from the sections."""
        from agent.core.engine import EngineSettings
        from agent.core.mpc.qp import SolverSettings
        from agent.core.risk import RiskLimits

        e, r = self.engine, self.risk
        limits = RiskLimits(max_snapshot_age_ms=r.max_snapshot_age_ms, max_child_shares=r.max_child_shares,
                            limit_slippage_bps=r.limit_slippage_bps)
        return EngineSettings(
            max_participation=e.max_participation_frac, impact_half_life_s=e.impact_half_life_s,
            volume_half_life_s=e.volume_half_life_s, volatility_half_life_s=e.volatility_half_life_s,
            penalty_ticks=e.penalty_ticks, tick=e.tick_usd, size_grid_multiple=e.size_grid_multiple_x,
            risk=limits, solver=_dataclass_from(SolverSettings, _solver_values(self.solver)),
        )

    def secret_values(self) -> list[str]:
        """The plain text of every secret setting (for log redaction; never log or print these)."""
        k = self.kafka
        return [s.get_secret_value() for s in (k.sasl_password, k.ssl_password) if s is not None]

    def masked(self) -> dict[str, Any]:
        """JSON-able dump with secrets masked (``--print-config``)."""
        data: dict[str, Any] = json.loads(self.model_dump_json())
        return data


def _solver_values(s: SolverSection) -> dict[str, Any]:
    return s.model_dump()  # same field names as agent.core.mpc.qp.SolverSettings (time_limit_s included)


def _dataclass_from(cls: Any, values: Mapping[str, Any]) -> Any:
    """Instantiate a dataclass with the values whose names it has (others ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Build the configuration once: overrides > env ``MPC_AGENT_*`` > TOML ``path`` > defaults.

    Parameters
    ----------
    path : optional TOML file with one table per section.
    overrides : nested mapping ``{section: {field: value}}`` (CLI flags); None values are dropped.

    Raises
    ------
    ConfigError : missing file or invalid values (the message names the field).
    """
    toml_file = Path(path) if path is not None else None
    if toml_file is not None and not toml_file.is_file():
        raise ConfigError(f"config file {toml_file} not found; pass an existing TOML file to --config")
    clean = {sec: {k: v for k, v in vals.items() if v is not None}
             for sec, vals in (overrides or {}).items()}

    class _Loaded(AgentConfig):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if toml_file is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
            return tuple(sources)

    try:
        return _Loaded(**{k: v for k, v in clean.items() if v})  # type: ignore[arg-type]
    except PydanticValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid configuration (env MPC_AGENT_<SECTION>__<FIELD>, TOML or flags): "
                          + "; ".join(lines)) from None
    except ValueError as exc:  # TOML syntax errors
        raise ConfigError(f"cannot read config: {exc}") from None
