"""What Grafana and Prometheus will ask of the workers: every PromQL expression in the committed
dashboards (``grafana/dashboards/*.json``) and alert rules (``deploy/prometheus/rules/*.yml``).

Tests use these to check that each expression parses (tests/deploy) and, against a real worker,
returns data (the end-to-end test). :func:`render_expr` replaces Grafana's template variables with
concrete values, as Grafana would before sending the query.

Examples
--------
>>> render_expr('rate(x{ticker=~"$ticker", model=~"$model"}[$__rate_interval])', ticker="AAPL", model="arima")
'rate(x{ticker=~"AAPL", model=~"arima"}[1m])'
>>> render_expr('x{source="$feed"}')
Traceback (most recent call last):
...
ValueError: x{source="$feed"}: no value for $feed
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _dashboards() -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))]


def dashboard_queries() -> list[tuple[str, str, str]]:
    """``(dashboard title, panel title, expr)`` for every query of every panel."""
    return [
        (board["title"], panel["title"], target["expr"])
        for board in _dashboards()
        for panel in board.get("panels", [])
        for target in panel.get("targets", [])
    ]


def annotation_queries() -> list[tuple[str, str, str]]:
    """``(dashboard title, annotation name, expr)`` for every Prometheus annotation."""
    return [
        (board["title"], annotation["name"], annotation["expr"])
        for board in _dashboards()
        for annotation in board.get("annotations", {}).get("list", [])
        if "expr" in annotation
    ]


def alert_rules() -> list[dict]:
    """Every alerting rule of ``deploy/prometheus/rules``, as written."""
    return [
        rule
        for path in sorted(RULES_DIR.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def alert_expressions() -> list[tuple[str, str]]:
    """``(alert name, expr)`` for every alerting rule."""
    return [(rule["alert"], rule["expr"].strip()) for rule in alert_rules()]


def render_expr(expr: str, ticker: str = ".*", model: str = ".*", rate_interval: str = "1m",
                interval: str = "15s", range_: str = "1h") -> str:
    """``expr`` with Grafana's variables replaced; an unknown variable raises :class:`ValueError`.

    ``ticker`` and ``model`` go inside ``=~"..."`` matchers, so a regular expression (the default
    ``.*``, Grafana's "All") or a plain value both work.
    """
    values = {"ticker": ticker, "model": model, "__rate_interval": rate_interval, "__interval": interval,
              "__range": range_}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"{expr}: no value for ${name}")
        return values[name]

    return _VARIABLE.sub(value, expr)
