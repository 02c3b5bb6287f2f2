"""What the monitoring assets query: dashboard and alert expressions, the metrics they name, and
which of those the agent exports (shared by tests/unit/test_alerts.py, tests/unit/test_compose.py
and tests/integration/test_prometheus.py).

``PENDING_METRICS`` are metrics the dashboard and the alerts already use but the agent does not
export yet (issue 14: other parts add them). The tests treat a pending metric like any other as
soon as the agent exports it, so they tighten by themselves; once it is exported, delete it here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "mpc-agent.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
PROMETHEUS_LOCAL = ROOT / "scripts" / "prometheus-local"

PENDING_METRICS: dict[str, str] = {}
PENDING_LABELLED_COUNTERS: set[str] = set()
PROMETHEUS_SYNTHETIC = {"up"}  # made by Prometheus itself, not by the agent

_NAME = re.compile(r"\b(mpc_agent_[a-z0-9_]+|process_[a-z0-9_]+|up)\b(?!\s*\()")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def dashboard_exprs() -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every target of the dashboard."""
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of ``deploy/prometheus/alerts.yml`` (``alert``, ``expr``, ``for``, ...)."""
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (label values and function names left out)."""
    return set(_NAME.findall(_STRING.sub('""', expr)))


def family(sample_name: str, families: set[str]) -> str:
    """The metric family of a sample name (``x_bucket`` -> ``x``) when ``families`` has it."""
    for suffix in ("_bucket", "_count", "_sum", "_created", "_total", ""):
        if suffix and sample_name.endswith(suffix) and sample_name[: -len(suffix)] in families:
            return sample_name[: -len(suffix)]
    return sample_name


def exported_metrics() -> tuple[set[str], set[str]]:
    """``(sample names, lazy counters)`` of every metric the agent registers.

    Sample names: ``x``, ``x_total``, ``x_bucket``, ... as they may appear in /metrics. Lazy
    counters (labelled ones) have no series before their first event: the dashboard and the
    alerts must count that first event too.
    """
    from prometheus_client import CollectorRegistry

    from agent.live.delivery import ReliabilityMetrics
    from agent.live.metrics import AgentMetrics

    reg = CollectorRegistry()
    AgentMetrics.create(reg)
    ReliabilityMetrics.create(reg)
    names: set[str] = set()
    lazy: set[str] = set()
    for fam in reg.collect():
        if fam.type in ("counter", "histogram", "summary"):
            names |= {fam.name, f"{fam.name}_total", f"{fam.name}_bucket", f"{fam.name}_count",
                      f"{fam.name}_sum"}
        else:
            names.add(fam.name)
        if fam.type == "counter" and not fam.samples:
            lazy.add(f"{fam.name}_total")
    return names, lazy | PENDING_LABELLED_COUNTERS


def promtool() -> str:
    """Path of ``promtool``: on PATH, else installed by ``scripts/prometheus-local install``.

    Without it the calling test fails under ``CI=true`` and is skipped elsewhere.
    """
    found = shutil.which("promtool")
    if found:
        return found
    res = subprocess.run([str(PROMETHEUS_LOCAL), "install"], capture_output=True, text=True, timeout=900,
                         check=False)
    found = shutil.which("promtool") or (res.stdout.strip().splitlines() or [""])[-1]
    if res.returncode == 0 and found and Path(found).is_file():
        return found
    reason = f"promtool missing and scripts/prometheus-local install failed: {res.stderr.strip()[-1500:]}"
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
