"""docker-compose.yml, Dockerfile and deploy/: static checks (no Docker engine here).

Every file the stack references exists, environment names are fields of the
config model (and their values load), ports agree between the agent, the
scrape config and the compose port mappings, topics match the defaults, and the
Grafana dashboard only queries metrics the agent exports.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from agent.app.config import AgentConfig, TopicsSection, load_config
from agent.live.delivery import ReliabilityMetrics
from agent.live.metrics import AgentMetrics
from tests.monitoring import PENDING_METRICS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SERVICES = {"kafka", "topic-init", "agent", "publisher", "fill-responder", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {str(k): str(v) for k, v in env.items()}


def _argv(service: dict[str, Any], key: str) -> list[str]:
    v = service.get(key, [])
    return shlex.split(v) if isinstance(v, str) else [str(x) for x in v]


def test_compose_has_every_service_and_kafka_is_the_official_image_in_kraft_mode(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= SERVICES
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = _env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_CONTROLLER_QUORUM_VOTERS" in env
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert services["topic-init"]["image"] == kafka["image"]


def test_every_referenced_host_file_exists(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build is not None:
            ctx = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            assert (ctx / dockerfile).is_file(), f"{name}: missing {dockerfile}"
        for vol in svc.get("volumes", []):
            host = vol.split(":", 1)[0]
            if host.startswith((".", "/")):
                assert (ROOT / host).exists(), f"{name}: volume source {host} does not exist"
        for arg in _argv(svc, "command") + _argv(svc, "entrypoint"):
            if re.match(r"^(data|deploy)/", arg):
                assert (ROOT / arg).exists(), f"{name}: {arg} does not exist in the repository"


def test_dockerfile_copies_what_the_containers_use() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for src in ("pyproject.toml", "agent", "feeds", "replay", "data", "deploy"):
        assert re.search(rf"^COPY .*\b{src}\b", text, re.M), f"Dockerfile does not copy {src}"
    m = re.search(r"^EXPOSE (\d+)", text, re.M)
    assert m and int(m.group(1)) == AgentConfig().http.port


def test_mpc_agent_environment_names_are_config_fields_and_load(compose: dict[str, Any],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    seen = 0
    for name, svc in compose["services"].items():
        env = {k: v for k, v in _env(svc).items() if k.startswith("MPC_AGENT_")}
        for key in env:
            section, _, fld = key.removeprefix("MPC_AGENT_").lower().partition("__")
            assert section in AgentConfig.model_fields, f"{name}: {key}: no section {section!r}"
            sub = type(getattr(AgentConfig(), section))
            assert fld in sub.model_fields, f"{name}: {key}: no field {section}.{fld}"
            seen += 1
        for k in [k for k in os.environ if k.startswith("MPC_AGENT_")]:
            monkeypatch.delenv(k)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        load_config()  # values validate
    assert seen >= 5


def test_agent_port_matches_scrape_target_and_port_mapping(compose: dict[str, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    agent = compose["services"]["agent"]
    for k, v in _env(agent).items():
        monkeypatch.setenv(k, v)
    port = load_config().http.port
    assert f"{port}:{port}" in [str(p) for p in agent["ports"]]
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert f"agent:{port}" in targets
    assert load_config().kafka.bootstrap_servers == "kafka:9092"
    assert load_config().service.clock == "event"


def test_topic_init_creates_every_default_topic() -> None:
    script = (ROOT / "deploy" / "create-topics.sh").read_text()
    for topic in TopicsSection().model_dump().values():
        assert re.search(rf"(^|\s){re.escape(topic)}(\s|$)", script), f"{topic} is not created"
    assert "cleanup.policy=compact" in script


def test_publisher_parent_order_is_a_valid_parent_order_v1() -> None:
    from feeds.wire import codec

    msg = codec.decode((ROOT / "deploy" / "parent-order.json").read_bytes(), expected={"parent_order.v1"})
    codec.parent_to_model(msg)  # type: ignore[arg-type]


def test_grafana_dashboard_queries_only_exported_metrics() -> None:
    reg = CollectorRegistry()
    AgentMetrics.create(reg)
    ReliabilityMetrics.create(reg)
    exported = {s for m in reg.collect() for s in (m.name, m.name + "_total", m.name + "_bucket",
                                                     m.name + "_count", m.name + "_sum")}
    exported |= set(PENDING_METRICS)  # used already, exported by other parts of issue 14
    dash = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "mpc-agent.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"mpc_agent_\w+", e)}
    assert names and names <= exported, f"unknown metrics {sorted(names - exported)}"
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("solve latency", "decisions", "remaining", "rejected", "fallback"):
        assert topic in titles
    prov = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert prov["datasources"][0]["url"] == "http://prometheus:9090"
