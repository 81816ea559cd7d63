"""Dashboards and alerts ask only for series that the worker exports (``stream_app/metrics.py``)."""

from __future__ import annotations

import re

import pytest

from tests.deploy.observability import alert_expressions, annotation_queries, dashboard_queries

_METRIC = re.compile(r"\bforecaster_[a-z0-9_]+")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "info": ("_info",),
             "gauge": ("",)}


def _exported_series() -> set[str]:
    from stream_app.metrics import WorkerMetrics

    return {family.name + suffix
            for family in WorkerMetrics().registry.collect()
            for suffix in _SUFFIXES[family.type]}


def _referenced() -> list[tuple[str, str]]:
    expressions = [(f"{board} / {panel}", expr) for board, panel, expr in dashboard_queries()]
    expressions += [(f"{board} / {name}", expr) for board, name, expr in annotation_queries()]
    expressions += alert_expressions()
    return [(where, name) for where, expr in expressions for name in _METRIC.findall(expr)]


@pytest.mark.parametrize(("where", "series"), _referenced(), ids=lambda value: value)
def test_referenced_series_is_exported_by_the_worker(where: str, series: str) -> None:
    assert series in _exported_series(), f"{where} asks for {series}, which the worker does not export"


def test_every_exported_metric_is_on_a_dashboard() -> None:
    shown = {name for _, name in _referenced()}
    families = {re.sub(r"_(total|bucket|count|sum|info)$", "", series) for series in shown}
    unshown = {series for series in _exported_series()
               if re.sub(r"_(total|bucket|count|sum|info)$", "", series) not in families}
    assert unshown == set()
