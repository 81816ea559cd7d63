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
import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer

from forecaster.cli import main
from forecaster.kafka.client import kafka_python_options
from forecaster.settings import Settings
from models.core.bar import Bar
from producers.readers import ReadResult, read_csv_bars
from producers.replay import replay
from tests.deploy.observability import (
    RULES_DIR,
    alert_expressions,
    annotation_queries,
    dashboard_queries,
    render_expr,
)
from tests.deploy.prometheus_server import PrometheusServer, running_prometheus
from tests.stream.worker_process import WorkerProcess

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TICKERS = ("AAPL", "IBM", "MSFT")
DAYS = 600
SHIFT_AT = 400
VOLATILITY_JUMP = 4.0


def resampled_bars(data_dir: Path, shift: bool, seed: int = 11) -> list[Bar]:
    """Bars whose days are real (return, range, volume) triples drawn with replacement."""
    real = read_csv_bars([data_dir / "bokeh-stocks.csv.gz"], tickers=TICKERS, start=dt.date(2011, 1, 1),
                         end=dt.date(2012, 12, 31)).bars
    rng = np.random.default_rng(seed)
    bars = []
    for ticker in TICKERS:
        history = [b for b in real if b.ticker == ticker]
        days = [(math.log(b.close / a.close), b.high / b.close, b.low / b.close, b.open / b.close, b.volume)
                for a, b in itertools.pairwise(history)]
        close, day = history[0].close, dt.date(2020, 1, 6)
        for i in range(DAYS):
            log_return, high, low, open_, volume = days[rng.integers(len(days))]
            scale = VOLATILITY_JUMP if shift and i >= SHIFT_AT else 1.0
            close *= math.exp(scale * log_return)
            # The range widens with the volatility: ratios to the close are scaled in log space.
            bars.append(Bar(ticker, day, close * open_ ** scale, close * high ** scale, close * low ** scale,
                            close, volume, source="resampled"))
            day += dt.timedelta(days=3 if day.weekday() == 4 else 1)
    return sorted(bars, key=lambda b: (b.date, b.ticker))


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return kafka_settings.replace(window=60, refit_every=10, drift_window=250, rolling_window=20,
                                  page_hinkley_threshold=20.0)


@pytest.fixture
def observed(settings: Settings, tmp_path: Path) -> Iterator[tuple[WorkerProcess, PrometheusServer]]:
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.metrics()  # up before Prometheus starts scraping it
        target = f"{worker.settings.metrics_host}:{worker.settings.metrics_port}"
        with running_prometheus(tmp_path / "prometheus", targets=[target],
                                rule_files=sorted(RULES_DIR.glob("*.yml"))) as prometheus:
            yield worker, prometheus


def values(prometheus: PrometheusServer, expr: str) -> list[float]:
    answer = prometheus.query(expr)
    assert answer["status"] == "success", (expr, answer)
    return [float(sample["value"][1]) for sample in answer["data"]["result"]]


def wait_until(condition, what: str, worker: WorkerProcess, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        worker.assert_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {timeout_s} s\n{worker.output()}")
        time.sleep(0.5)


def replay_and_wait(bars: list[Bar], settings: Settings, worker: WorkerProcess,
                    prometheus: PrometheusServer) -> None:
    replay(ReadResult(bars=bars, dead_letters=[], rows_read=len(bars), filtered=0), settings, progress=False)
    wait_until(lambda: values(prometheus, "forecaster_bars_consumed_total") == [float(len(bars))],
               f"Prometheus did not see {len(bars)} bars consumed", worker)


def alert_states(prometheus: PrometheusServer, name: str) -> set[str]:
    alerts = prometheus.api("alerts")["data"]["alerts"]
    return {a["state"] for a in alerts if a["labels"]["alertname"] == name}


def test_a_stationary_replay_raises_no_drift(data_dir: Path, settings: Settings, observed) -> None:
    worker, prometheus = observed
    replay_and_wait(resampled_bars(data_dir, shift=False), settings, worker, prometheus)
    scores = values(prometheus, "forecaster_feature_drift_score")
    assert scores, "the warm reference was learnt and every feature scored"
    assert max(scores) < settings.psi_threshold
    assert values(prometheus, "max(forecaster_feature_drift_state)") == [0.0]
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

    drifted = values(prometheus, "forecaster_feature_drift_state == 1")
    assert drifted, values(prometheus, "forecaster_feature_drift_score")
    assert values(prometheus, "sum(forecaster_feature_drift_alarms_total)")[0] >= 1
    wait_until(lambda: alert_states(prometheus, "ForecasterFeatureDrift") & {"pending", "firing"},
               "the feature drift alert is neither pending nor firing", worker, timeout_s=30)
    assert values(prometheus, 'forecaster_dead_letters_total{reason="non_positive_price"}') == [1.0]

    # Every panel of every dashboard returns data once rates have two samples in their window.
    queries = [(f"{board} / {panel}", render_expr(expr)) for board, panel, expr in dashboard_queries()]
    for name, expr in queries:
        wait_until(lambda expr=expr: bool(values(prometheus, expr)), f"no data for {name}: {expr}", worker,
                   timeout_s=60)
    # Annotations and alert expressions parse; the drift alert's returns data now.
    for _, _, expr in annotation_queries():
        values(prometheus, render_expr(expr))
    for alert, expr in alert_expressions():
        result = values(prometheus, expr)
        if alert == "ForecasterFeatureDrift":
            assert result, expr

    # The picture without Grafana: the same panels drawn from this Prometheus.
    page = tmp_path / "stream-report.html"
    assert main(["report", "--prometheus", prometheus.url, "--out", str(page), "--minutes", "10"]) == 0
    html = page.read_text()
    scored = len(values(prometheus, "forecaster_feature_drift_score"))
    assert scored > 0 and f"features scored</th><td>{scored}</td>" in html
    assert "data:image/png;base64," in html
    picture = tmp_path / "stream-report.png"
    assert main(["report", "--prometheus", prometheus.url, "--out", str(picture), "--ticker", "IBM"]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
