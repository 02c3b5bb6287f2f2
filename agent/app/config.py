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
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agent.core.errors import ConfigError
from agent.live.settings import (
    HttpSection,
    KafkaSection,
    LogSection,
    Section,
    ServiceSection,
    TopicsSection,
)

if TYPE_CHECKING:  # pragma: no cover
    from agent.core.forecast.profile import IntradayProfile
    from agent.core.policy import EngineSettings
    from agent.core.risk import VenueRules

ENV_PREFIX = "MPC_AGENT_"
ENV_DELIMITER = "__"


class FileFeedSection(Section):
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


class ParentSection(Section):
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


class EngineSection(Section):
    """``agent.core.policy.EngineSettings`` (``CORE_NAMES`` maps fields whose unit suffix the core omits)."""

    CORE_NAMES: ClassVar[dict[str, str]] = {"max_participation_frac": "max_participation", "tick_usd": "tick",
                                            "size_grid_multiple_x": "size_grid_multiple"}
    max_participation_frac: float = Field(default=0.2, gt=0, le=1)
    forecast: Literal["reverting", "ewma"] = Field(
        default="reverting", description="reverting: slot 0 from the book now, later slots revert to "
        "level x profile; ewma: every slot from the EW estimate x profile")
    impact_half_life_s: float = Field(default=300.0, gt=0)
    impact_now_half_life_s: float | None = Field(
        default=None, gt=0, description="a faster estimate for the current slot (None: off)")
    min_convexity: float = Field(default=0.01, ge=0, description="gamma floor as a fraction of beta / (R / P)")
    max_child_multiple: float = Field(default=4.0, gt=0, description="trust region: no slot above this "
                                      "multiple of the even slice R / P")
    volume_half_life_s: float = Field(default=1800.0, gt=0)
    volatility_half_life_s: float = Field(default=1800.0, gt=0)
    penalty_ticks: float = Field(default=3.0, ge=0)
    tick_usd: float = Field(default=0.01, gt=0)
    size_grid_multiple_x: float = Field(default=4.0, gt=0)
    profile_path: str | None = Field(
        default=None, description="intraday profiles JSON from `mpc-agent profile` (None: flat)")


class ReversionSection(Section):
    """``agent.core.forecast.reversion.ReversionSettings`` (the reverting forecast)."""

    CORE_NAMES: ClassVar[dict[str, str]] = {}
    sample_s: float = Field(default=10.0, gt=0, description="book sampling grid")
    lag_s: float = Field(default=60.0, gt=0, description="lag of the persistence estimate")
    level_half_life_s: float = Field(default=300.0, gt=0)
    memory_half_life_s: float = Field(default=7200.0, gt=0, description="forgetting of the AR(1) statistics")
    prior_half_life_s: float = Field(default=float("inf"), ge=0, description="prior deviation half-life "
                                     "(inf: no reversion until the data shows it)")
    volume_prior_half_life_s: float = Field(default=0.0, ge=0, description="prior for the volume "
                                            "(0: the level, as the EWMA caps)")
    prior_s: float = Field(default=600.0, ge=0, description="weight of the prior, seconds of data")
    deviation_cap: float = Field(default=3.0, gt=0, description="winsorisation of relative deviations")
    max_gap_s: float = Field(default=900.0, gt=0)


class RiskSection(Section):
    """``agent.core.risk.RiskLimits`` plus the kill switch."""

    CORE_NAMES: ClassVar[dict[str, str]] = {}
    max_snapshot_age_ms: float = Field(default=2_000.0, gt=0)
    max_child_shares: float = Field(default=float("inf"), gt=0)
    limit_slippage_bps: float = Field(default=10.0, ge=0)
    kill_switch: bool = Field(default=False, description="start with the kill switch on (it is then "
                              "changed at runtime by kill_switch.v1 or POST /kill-switch)")


class InstrumentSection(Section):
    """One symbol's venue rules (``[venue.symbols.ES] tick_usd = 0.25``)."""

    tick_usd: float | None = Field(default=None, gt=0, description="fixed tick; None = venue.tick_table")
    lot_shares: float | None = Field(default=None, gt=0, description="None = venue.lot_shares")


class VenueSection(Section):
    """``agent.core.risk.VenueRules``: the tick grid of limit prices and the lot of child quantities."""

    tick_table: tuple[tuple[float, float], ...] = Field(
        default=((0.0, 0.0001), (1.0, 0.01)), description="(min price USD, tick USD) bands: $0.0001 "
        "below $1, $0.01 at or above (US equities)")
    lot_shares: float | None = Field(default=None, gt=0, description="None = the parent order's lot_size; "
                                     "else child quantities are whole multiples of both")
    symbols: dict[str, InstrumentSection] = Field(default_factory=dict, description="per-symbol overrides")

    @model_validator(mode="after")
    def _valid_rules(self) -> VenueSection:
        self.rules()  # the core's checks (a band edge off a tick grid, a tick <= 0) as a config error
        return self

    def rules(self) -> VenueRules:
        """The core's frozen :class:`agent.core.risk.VenueRules`."""
        from agent.core.risk import InstrumentRules, VenueRules

        table = tuple((float(lo), float(t)) for lo, t in self.tick_table)
        return VenueRules(
            default=InstrumentRules(lot=self.lot_shares, tick_table=table),
            symbols=tuple((sym, InstrumentRules(tick=i.tick_usd, lot=i.lot_shares or self.lot_shares,
                                                tick_table=table))
                          for sym, i in sorted(self.symbols.items())))


class SolverSection(Section):
    """``agent.core.mpc.qp.SolverSettings`` (OSQP and the horizon's blocking)."""

    CORE_NAMES: ClassVar[dict[str, str]] = {}
    eps_abs: float = Field(default=1e-3, gt=0)
    eps_rel: float = Field(default=1e-3, gt=0)
    max_iter: int = Field(default=4000, gt=0)
    time_limit_s: float = Field(default=0.05, ge=0, description="0 = no limit; keep below the period")
    polish: bool = True
    adaptive_rho: bool = True
    polish_refine_iter: int = Field(default=10, ge=0)
    fine_slots: int = Field(default=30, gt=0, description="one-period slots at the front of the horizon")
    coarse_slots: int = Field(default=20, ge=0, description="blocked slots that reach the deadline")
    terminal_penalty: float = Field(default=1e4, gt=0)


def to_core(section: Section, cls: Any, **extra: Any) -> Any:
    """The core dataclass ``cls`` from a section: fields renamed by ``CORE_NAMES``, then matched by name.

    Raises ``ConfigError`` when a core field has no value (a knob the configuration cannot reach)."""
    names = {f.name for f in dataclasses.fields(cls)}
    rename: dict[str, str] = getattr(section, "CORE_NAMES", {})
    values = {rename.get(k, k): v for k, v in section.model_dump().items()}
    kwargs = {k: v for k, v in values.items() if k in names} | extra
    missing = names - set(kwargs)
    if missing:
        raise ConfigError(f"{type(section).__name__} does not set {sorted(missing)} of {cls.__name__}")
    return cls(**kwargs)


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
    log: LogSection = LogSection()
    engine: EngineSection = EngineSection()
    reversion: ReversionSection = ReversionSection()
    risk: RiskSection = RiskSection()
    venue: VenueSection = VenueSection()
    solver: SolverSection = SolverSection()

    # ------------------------------------------------------------ mapping
    def engine_settings(self) -> EngineSettings:
        """The core's frozen dataclasses built from the sections (every core knob has a field)."""
        from agent.core.forecast.reversion import ReversionSettings
        from agent.core.mpc.qp import SolverSettings
        from agent.core.policy import EngineSettings
        from agent.core.risk import RiskLimits

        return to_core(self.engine, EngineSettings, risk=to_core(self.risk, RiskLimits, venue=self.venue.rules()),
                       solver=to_core(self.solver, SolverSettings),
                       reversion=to_core(self.reversion, ReversionSettings))

    def load_profile(self, symbol: str | None = None) -> IntradayProfile | None:
        """The intraday profile from ``engine.profile_path`` (``mpc-agent profile``'s JSON): ``symbol``'s
        own (``file_feed.symbol`` / ``parent.symbol`` when not given), else the pooled shape; None when
        no path is set. The engine holds one profile, so an agent trading several symbols uses the
        pooled shape unless one symbol is configured."""
        if not self.engine.profile_path:
            return None
        from agent.core.forecast.profile_set import ProfileSet

        path = Path(self.engine.profile_path)
        try:
            profiles = ProfileSet.load(path)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"engine.profile_path {path}: {exc}; make one with 'mpc-agent profile'") from None
        sym = symbol or self.file_feed.symbol or self.parent.symbol
        if sym:
            return profiles.for_symbol(sym)
        return profiles.pooled

    def secret_values(self) -> list[str]:
        """The plain text of every secret setting (for log redaction; never log or print these)."""
        k = self.kafka
        return [s.get_secret_value() for s in (k.sasl_password, k.ssl_password, self.http.admin_token)
                if s is not None]

    def masked(self) -> dict[str, Any]:
        """JSON-able dump with secrets masked (``--print-config``)."""
        data: dict[str, Any] = json.loads(self.model_dump_json())
        return data


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
