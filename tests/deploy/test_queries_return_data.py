"""Every dashboard query returns data from a real Prometheus scraping the worker's own metrics.

The exporter is ``stream_app.metrics.WorkerMetrics`` with one series per metric (label values
below), so a query that names a wrong label or metric shows up here as an empty answer, not only in
Grafana. The end-to-end test asks the same of a worker fed by a real replay.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram, Info

from forecaster.kafka.broker import free_port
from tests.deploy.observability import annotation_queries, dashboard_queries, render_expr
from tests.deploy.prometheus_server import PrometheusServer, running_prometheus

LABEL_VALUES = {"ticker": "AAPL", "model": "arima", "level": "0.8", "feature": "log_return",
                "reason": "invalid_row", "outcome": "failed", "partition": "0", "regime": "calm",
                "kind": "state", "alias": "challenger", "version": "2", "horizon": "1"}
SCRAPE_TIMEOUT_S = 30.0


def _series(metric: Counter | Gauge | Histogram) -> Counter | Gauge | Histogram:
    # prometheus_client keeps a metric's label names in `_labelnames`; one child per metric is enough.
    names = metric._labelnames
    return metric.labels(**{name: LABEL_VALUES[name] for name in names}) if names else metric


def _move_every_metric(metrics: object) -> None:
    """Count, observe and set every metric once, so rates, quantiles and states have data."""
    for metric in vars(metrics).values():
        if isinstance(metric, Info):
            metric.info({"name": "next-close", "version": "1"})
        elif isinstance(metric, Counter):
            _series(metric).inc()
        elif isinstance(metric, Histogram):
            _series(metric).observe(0.01)
        elif isinstance(metric, Gauge):
            _series(metric).set(1)


def _scrapes(prometheus: PrometheusServer) -> int:
    result = prometheus.query('count_over_time(up{job="forecaster-worker"}[5m])')["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def _wait_for_scrapes(prometheus: PrometheusServer, count: int) -> None:
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while _scrapes(prometheus) < count:
        assert time.monotonic() < deadline, f"fewer than {count} scrapes in {SCRAPE_TIMEOUT_S} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def scraped_worker_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    from stream_app.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    port = free_port()
    metrics.serve("127.0.0.1", port)
    workdir: Path = tmp_path_factory.mktemp("prometheus-scraping")
    with running_prometheus(workdir, targets=[f"127.0.0.1:{port}"]) as prometheus:
        _move_every_metric(metrics)
        _wait_for_scrapes(prometheus, 1)
        # Move again after a scrape, so counters increase between two samples.
        _move_every_metric(metrics)
        _wait_for_scrapes(prometheus, 3)
        yield prometheus


@pytest.mark.parametrize("query", dashboard_queries() + annotation_queries(), ids=lambda q: " / ".join(q[:2]))
def test_dashboard_query_returns_data(scraped_worker_metrics: PrometheusServer,
                                      query: tuple[str, str, str]) -> None:
    expr = render_expr(query[2], ticker=LABEL_VALUES["ticker"], model=LABEL_VALUES["model"])
    answer = scraped_worker_metrics.query(expr)
    assert answer["status"] == "success", answer
    assert answer["data"]["result"], f"no data for {expr}"
