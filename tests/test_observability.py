"""Observability with real parts: a real worker fed by a real replay, scraped by a real Prometheus.

Every dashboard query and alert expression is asked of that Prometheus. Drift is shown on two
replays built from the same real daily returns (AAPL, IBM, MSFT in 2011-2012, resampled day by day
with their ranges and volumes, so each series is stationary by construction): one as it is, one
whose volatility quadruples two thirds of the way in. The second must raise the drift gauges and
put the drift alert in pending or firing state; the first must not.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from forecaster.cli import main
from forecaster.kafka.client import kafka_python_options
from forecaster.settings import Settings
from tests.deploy.observability import (
    RULES_DIR,
    alert_expressions,
    annotation_queries,
    dashboard_queries,
    render_expr,
)
from tests.deploy.prometheus_server import PrometheusServer
from tests.observed import replay_and_wait, resampled_bars, scraped_worker
from tests.worker import WorkerProcess, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return kafka_settings.replace(window=60, refit_every=10, drift_window=250, rolling_window=20,
                                  page_hinkley_threshold=20.0)


@pytest.fixture
def observed(settings: Settings, tmp_path: Path) -> Iterator[tuple[WorkerProcess, PrometheusServer]]:
    with scraped_worker(settings, tmp_path, sorted(RULES_DIR.glob("*.yml"))) as observed:
        yield observed


def alert_states(prometheus: PrometheusServer, name: str) -> set[str]:
    alerts = prometheus.api("alerts")["data"]["alerts"]
    return {a["state"] for a in alerts if a["labels"]["alertname"] == name}


def test_a_stationary_replay_raises_no_drift(data_dir: Path, settings: Settings, observed) -> None:
    worker, prometheus = observed
    replay_and_wait(resampled_bars(data_dir, shift=False), settings, worker, prometheus)
    scores = prometheus.values("forecaster_feature_drift_score")
    assert scores, "the warm reference was learnt and every feature scored"
    assert max(scores) < settings.psi_threshold
    assert prometheus.values("max(forecaster_feature_drift_state)") == [0.0]
    assert not alert_states(prometheus, "ForecasterFeatureDrift")


def test_a_volatility_jump_raises_drift_and_every_panel_shows_data(
        data_dir: Path, settings: Settings, observed, tmp_path: Path) -> None:
    worker, prometheus = observed
    bars = resampled_bars(data_dir, shift=True)
    poison = dataclasses.replace(bars[0], date=bars[-1].date + dt.timedelta(days=7)).to_dict()
    poison["close"] = -1.0
    producer = KafkaProducer(**kafka_python_options(settings), acks="all")
    producer.send(settings.topic_bars, key=b"AAPL", value=orjson.dumps(poison))
    producer.flush()
    producer.close()
    replay_and_wait(bars, settings, worker, prometheus)

    drifted = prometheus.values("forecaster_feature_drift_state == 1")
    assert drifted, prometheus.values("forecaster_feature_drift_score")
    assert prometheus.values("sum(forecaster_feature_drift_alarms_total)")[0] >= 1
    wait_until(lambda: alert_states(prometheus, "ForecasterFeatureDrift") & {"pending", "firing"},
               "the feature drift alert is neither pending nor firing", worker, timeout_s=30)
    assert prometheus.values('forecaster_dead_letters_total{reason="non_positive_price"}') == [1.0]

    # Every panel of every dashboard returns data once rates have two samples in their window.
    # The challengers' panels have series only while a challenger runs: tests/stream/test_shadow_worker.py
    # reads those metrics from a worker that has one.
    queries = [(f"{board} / {panel}", render_expr(expr)) for board, panel, expr in dashboard_queries()
               if "forecaster_shadow_" not in expr]
    for name, expr in queries:
        wait_until(lambda expr=expr: bool(prometheus.values(expr)), f"no data for {name}: {expr}", worker,
                   timeout_s=60)
    # Annotations and alert expressions parse; the drift alert's returns data now.
    for _, _, expr in annotation_queries():
        prometheus.values(render_expr(expr))
    for alert, expr in alert_expressions():
        result = prometheus.values(expr)
        if alert == "ForecasterFeatureDrift":
            assert result, expr

    # The picture without Grafana: the same panels drawn from this Prometheus.
    page = tmp_path / "stream-report.html"
    assert main(["report", "--prometheus", prometheus.url, "--out", str(page), "--minutes", "10"]) == 0
    html = page.read_text()
    scored = len(prometheus.values("forecaster_feature_drift_score"))
    assert scored > 0 and f"features scored</th><td>{scored}</td>" in html
    assert "data:image/png;base64," in html
    picture = tmp_path / "stream-report.png"
    assert main(["report", "--prometheus", prometheus.url, "--out", str(picture), "--ticker", "IBM"]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
