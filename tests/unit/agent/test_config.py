"""agent.app.config: sources, precedence, validation, masking, mapping onto the core."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError as PydanticValidationError

from agent.app.config import AgentConfig, load_config
from agent.core.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for k in list(os.environ):
        if k.startswith("MPC_AGENT_"):
            monkeypatch.delenv(k)


def _toml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.toml"
    p.write_text(text)
    return p


def test_load_config_without_sources_gives_defaults() -> None:
    cfg = load_config()
    assert cfg.model_dump() == AgentConfig().model_dump()
    assert cfg.topics.md == "md.mbp10" and cfg.topics.dlq == "md.mbp10.dlq"
    assert cfg.risk.max_snapshot_age_ms == 2000.0


def test_load_config_precedence_overrides_then_env_then_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _toml(tmp_path, "[risk]\nmax_snapshot_age_ms = 500\nlimit_slippage_bps = 4\n"
                           "[service]\nfeed = 'file'\n")
    monkeypatch.setenv("MPC_AGENT_RISK__MAX_SNAPSHOT_AGE_MS", "700")
    monkeypatch.setenv("MPC_AGENT_HTTP__PORT", "9200")
    cfg = load_config(path, {"http": {"port": 9300, "host": None}})
    assert cfg.risk.max_snapshot_age_ms == 700.0  # env beats TOML
    assert cfg.risk.limit_slippage_bps == 4.0  # TOML beats default, merged with env in the same section
    assert cfg.service.feed == "file"
    assert cfg.http.port == 9300  # override beats env
    assert cfg.http.host == "0.0.0.0"  # None override ignored


def test_load_config_unknown_field_in_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPC_AGENT_RISK__MAX_AGE", "1")
    with pytest.raises(ConfigError, match=r"risk\.max_age"):
        load_config()


def test_load_config_invalid_value_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"engine\.max_participation_frac"):
        load_config(_toml(tmp_path, "[engine]\nmax_participation_frac = 1.5\n"))


def test_load_config_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_sections_are_frozen() -> None:
    cfg = load_config()
    with pytest.raises(PydanticValidationError):
        cfg.risk.max_snapshot_age_ms = 1.0  # type: ignore[misc]


def test_masked_dump_hides_the_sasl_password_and_is_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPC_AGENT_KAFKA__SASL_PASSWORD", "hunter2")
    cfg = load_config()
    assert cfg.kafka.sasl_password is not None
    assert cfg.kafka.sasl_password.get_secret_value() == "hunter2"
    text = json.dumps(cfg.masked())
    assert "hunter2" not in text
    assert cfg.masked()["kafka"]["sasl_password"] == "**********"


def test_every_field_has_a_default() -> None:
    for name, section in AgentConfig.model_fields.items():
        sub = type(getattr(AgentConfig(), name))
        for field_name, f in sub.model_fields.items():
            assert not f.is_required(), f"{name}.{field_name} has no default"
        assert not section.is_required()


def test_engine_settings_maps_sections_onto_core_dataclasses(tmp_path: Path) -> None:
    cfg = load_config(_toml(tmp_path, "[engine]\nmax_participation_frac = 0.05\ntick_usd = 0.05\n"
                                      "[risk]\nmax_snapshot_age_ms = 250\nmax_child_shares = 1000\n"))
    es = cfg.engine_settings()
    assert es.max_participation == 0.05 and es.tick == 0.05
    assert es.risk.max_snapshot_age_ms == 250.0 and es.risk.max_child_shares == 1000.0


def test_engine_profile_path_loads_the_symbols_profile_from_mpc_agent_profile(tmp_path: Path) -> None:
    from agent.app.cli import main

    out = tmp_path / "profiles.json"
    assert main(["profile", "--out", str(out)]) == 0  # the embedded sample's history days
    own = load_config(overrides={"engine": {"profile_path": str(out)}, "parent": {"symbol": "SYNA"}}).load_profile()
    pooled = load_config(overrides={"engine": {"profile_path": str(out)}}).load_profile()
    assert own is not None and not own.is_flat and pooled is not None
    assert load_config().load_profile() is None
    with pytest.raises(ConfigError, match="profile_path"):
        load_config(overrides={"engine": {"profile_path": str(tmp_path / "missing.json")}}).load_profile()
