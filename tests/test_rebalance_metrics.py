"""Two real workers behind one real Prometheus: after a rebalance, every dashboard query gives one
series per ticker, because a worker drops the series of the tickers and partitions it lost."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from forecaster.settings import Settings
from producers.readers import read_csv_bars
from producers.replay import replay
from tests.deploy.observability import dashboard_queries, render_expr
from tests.deploy.prometheus_server import PrometheusServer, running_prometheus
from tests.worker import WorkerProcess, as_read, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TICKERS = ("AAPL", "AMZN", "JPM", "XOM", "JNJ", "PG", "GE", "KO", "INTC", "WMT")
#: Labels that tell workers and scrapes apart, not what a series measures.
WORKER_LABELS = {"instance", "job"}


def series_per_key(prometheus: PrometheusServer, expr: str) -> Counter[tuple]:
    """How many series of ``expr`` carry each set of labels other than the worker's, among the
    series that carry a ``ticker`` label."""
    answer = prometheus.query(expr)
    assert answer["status"] == "success", (expr, answer)
    return Counter(tuple(sorted((k, v) for k, v in sample["metric"].items() if k not in WORKER_LABELS))
                   for sample in answer["data"]["result"] if "ticker" in sample["metric"])


def test_after_a_rebalance_every_dashboard_query_has_one_series_per_ticker(
        data_dir: Path, kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.replace(window=60, refit_every=10, session_timeout_s=6.0)
    read = read_csv_bars([data_dir / "sp500-5yr-sample.csv.gz"], tickers=TICKERS, start=dt.date(2014, 1, 1),
                         end=dt.date(2014, 12, 31))
    days = sorted({bar.date for bar in read.bars})
    first = [bar for bar in read.bars if bar.date < days[len(days) // 2]]
    second = [bar for bar in read.bars if bar.date >= days[len(days) // 2]]
    one = WorkerProcess(settings, tmp_path / "one.log")
    two = WorkerProcess(settings, tmp_path / "two.log")
    targets = [f"{w.settings.metrics_host}:{w.settings.metrics_port}" for w in (one, two)]
    with one, running_prometheus(tmp_path / "prometheus", targets=targets) as prometheus:
        one.metrics()
        replay(as_read(first), settings, progress=False)
        wait_until(lambda: prometheus.values("sum(forecaster_bars_consumed_total)") == [float(len(first))],
                   "the first worker did not handle the first half", one)
        assert len(prometheus.values("forecaster_predicted_close")) == len(TICKERS)

        with two:  # joining, it takes partitions, and their tickers, from the first
            two.metrics()
            replay(as_read(second), settings, progress=False)
            total = float(len(read.bars))
            wait_until(lambda: prometheus.values("sum(forecaster_bars_consumed_total)") == [total]
                       and len(prometheus.values("count by (instance) (forecaster_predicted_close)")) == 2,
                       "the two workers did not share the second half", two)
            # A scrape after the last batch of each: every worker's series are the settled ones.
            wait_until(lambda: len(prometheus.values("forecaster_predicted_close")) == len(TICKERS),
                       "a ticker has a series on both workers or on none", two)

            everyone = "|".join(TICKERS)  # Grafana's "All" for the ticker variable
            for board, panel, expr in dashboard_queries():
                rendered = render_expr(expr, ticker=everyone)
                repeated = {key: n for key, n in series_per_key(prometheus, rendered).items() if n > 1}
                assert repeated == {}, f"{board} / {panel}: {rendered}"
            lags = prometheus.values("count by (partition) (forecaster_consumer_lag)")
            assert lags and set(lags) == {1.0}, "each partition's lag comes from one worker"
