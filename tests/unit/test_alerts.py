"""Alert rules and dashboard, checked with Debian's ``promtool`` (issue 14 item 8).

- ``promtool test rules deploy/prometheus/alerts_test.yml``: every alert fires in its test and
  stays quiet in the near misses;
- ``promtool check`` of the rules and of ``deploy/prometheus.yml`` (which loads them);
- every alert has a firing case in the promtool tests;
- every metric the alerts and the dashboard use is exported by the agent or listed as pending;
- every dashboard query over a labelled counter counts the events made before the series' first
  scrape (the fallback panel's old ``increase()`` did not), evaluated by promtool.

``promtool`` comes from PATH or ``scripts/prometheus-local install`` (apt-get); without it these
tests fail under ``CI=true`` and are skipped elsewhere.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.monitoring import (
    ALERTS,
    ALERTS_TEST,
    PENDING_METRICS,
    PROMETHEUS_SYNTHETIC,
    ROOT,
    alert_rules,
    dashboard_exprs,
    exported_metrics,
    metric_names,
    promtool,
)


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    res = _run("test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


def test_rules_and_the_compose_prometheus_config_are_valid() -> None:
    res = _run("check", "rules", str(ALERTS))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in res.stdout
    res = _run("check", "config", "deploy/prometheus.yml")  # rule_files resolve to deploy/prometheus/alerts.yml
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 rule files found" in res.stdout


def test_compose_mounts_the_rules_where_the_config_loads_them() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    vols = dict(v.rsplit(":", 1)[0].split(":", 1) for v in compose["services"]["prometheus"]["volumes"])
    assert vols["./deploy/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    for rule_file in prom["rule_files"]:
        host = (ROOT / "deploy" / rule_file).resolve()
        assert host == ALERTS
        mounted = [c for h, c in vols.items() if host.is_relative_to((ROOT / h).resolve()) and h != "./deploy/prometheus.yml"]
        assert mounted and f"{mounted[0]}/{host.name}" == f"/etc/prometheus/{rule_file}"


def test_every_alert_fires_in_a_promtool_test_and_has_severity_and_summary() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    firing = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if c.get("exp_alerts")}
    for rule in alert_rules():
        assert rule["alert"] in firing, f"{rule['alert']} never fires in {ALERTS_TEST.name}"
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_alerts_and_dashboard_use_only_exported_or_pending_metrics() -> None:
    exported, _ = exported_metrics()
    used = {name: where for where, expr in [*dashboard_exprs(), *((r["alert"], r["expr"]) for r in alert_rules())]
            for name in metric_names(expr)}
    unknown = {n: w for n, w in used.items() if n not in exported | set(PENDING_METRICS) | PROMETHEUS_SYNTHETIC}
    assert not unknown, f"metrics neither exported nor pending: {unknown}"
    stale = set(PENDING_METRICS) & exported
    assert not stale, f"now exported, remove from tests/monitoring.py PENDING_METRICS: {sorted(stale)}"
    for needed in ("mpc_agent_fills_total", "mpc_agent_broker_up", "mpc_agent_ready",
                   "mpc_agent_messages_rejected_total", "mpc_agent_transactions_total",
                   "mpc_agent_service_restarts_total", "mpc_agent_kill_switch", "mpc_agent_parents"):
        assert any(needed in metric_names(e) for _, e in dashboard_exprs()), f"no panel for {needed}"


def _first_scrape_cases() -> list[tuple[str, str, str, list[str]]]:
    """``(title, expr, counter, by-labels)`` of the dashboard queries over a labelled counter."""
    _, lazy = exported_metrics()
    cases = []
    for title, expr in dashboard_exprs():
        counters = metric_names(expr) & lazy
        if not counters:
            continue
        assert len(counters) == 1, (title, expr)
        m = re.match(r"^sum(?: by \(([^)]*)\))? ?\(", expr)
        assert m, f"{title}: expected sum [by (...)] (...) around a labelled counter: {expr}"
        by = [s.strip() for s in (m.group(1) or "").split(",") if s.strip()]
        cases.append((title, expr, counters.pop(), by))
    return cases


def test_dashboard_counts_events_made_before_a_series_first_scrape(tmp_path: Path) -> None:
    """A labelled counter's series appears with its first events already counted (e.g. 7 fallbacks):
    every panel over it must show them at that very first scrape, not from the second one on."""
    cases = _first_scrape_cases()
    assert any("fallback" in c[0].lower() for c in cases)
    tests = []
    for title, expr, counter, by in cases:
        labels = {"job": "mpc-agent", "instance": "a:9108", **{k: "x" for k in by}}
        series = "%s{%s}" % (counter, ", ".join(f'{k}="{v}"' for k, v in labels.items()))  # noqa: UP031
        want = "{%s}" % ", ".join(f'{k}="x"' for k in by)  # noqa: UP031
        tests.append({"name": title, "interval": "15s",
                      "input_series": [{"series": series, "values": "_x3 7x40"}],  # first sample at 60 s
                      "promql_expr_test": [{"expr": expr, "eval_time": "60s",
                                            "exp_samples": [{"labels": want, "value": 7}]}]})
    path = tmp_path / "first_scrape_test.yml"
    path.write_text(yaml.safe_dump({"evaluation_interval": "15s", "tests": tests}, sort_keys=False))
    res = _run("test", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
