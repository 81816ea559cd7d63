"""Prometheus configuration and alert rules, checked by the real Prometheus tools and server."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.deploy.observability import (
    RULES_DIR,
    alert_expressions,
    annotation_queries,
    dashboard_queries,
    render_expr,
)
from tests.deploy.prometheus_server import PrometheusServer, tool

PROMETHEUS_DIR = RULES_DIR.parent
RULE_EVALUATION_TIMEOUT_S = 30.0
_NEVER_EVALUATED = "0001-01-01T00:00:00Z"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, check=False)


def test_promtool_accepts_the_compose_configuration() -> None:
    result = _promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_rules() -> None:
    result = _promtool("check", "rules", *map(str, sorted(RULES_DIR.glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_on_bad_series_and_stay_silent_on_healthy_ones() -> None:
    # The scenarios live in deploy/prometheus/tests: promtool feeds series through the rules.
    result = _promtool("test", "rules", *map(str, sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_scenario_that_fires_it() -> None:
    scenarios = "\n".join(p.read_text() for p in (PROMETHEUS_DIR / "tests").glob("*.yml"))
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:", scenarios))
    assert fired == {name for name, _ in alert_expressions()}


def _query_id(query: tuple[str, ...]) -> str:
    return " / ".join(query[:2])


@pytest.mark.parametrize("query", dashboard_queries() + annotation_queries(), ids=_query_id)
def test_dashboard_query_parses(prometheus: PrometheusServer, query: tuple[str, str, str]) -> None:
    answer = prometheus.query(render_expr(query[2], ticker="AAPL", model="arima"))
    assert answer["status"] == "success", answer


@pytest.mark.parametrize("alert", alert_expressions(), ids=_query_id)
def test_alert_expression_parses(prometheus: PrometheusServer, alert: tuple[str, str]) -> None:
    answer = prometheus.query(alert[1])
    assert answer["status"] == "success", answer


def test_prometheus_loads_and_evaluates_every_alert(prometheus: PrometheusServer) -> None:
    deadline = time.monotonic() + RULE_EVALUATION_TIMEOUT_S
    while True:
        rules = [rule for group in prometheus.api("rules")["data"]["groups"] for rule in group["rules"]]
        if rules and all(rule["lastEvaluation"] != _NEVER_EVALUATED for rule in rules):
            break
        assert time.monotonic() < deadline, f"not evaluated in {RULE_EVALUATION_TIMEOUT_S} s: {rules}"
        time.sleep(0.2)
    assert sorted(rule["name"] for rule in rules) == sorted(name for name, _ in alert_expressions())
    assert [rule for rule in rules if rule["health"] != "ok"] == []
