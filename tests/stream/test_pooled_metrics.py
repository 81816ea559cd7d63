"""The pool's one metrics endpoint: the processes' pages merged, each series labelled with its process."""

from __future__ import annotations

import subprocess
import urllib.request
from collections import Counter

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from forecaster.kafka.broker import free_port
from forecaster.startup import listen
from stream_app.metrics import WorkerMetrics
from stream_app.pooled_metrics import PooledMetricsServer, PoolMetrics, pooled_exposition
from tests.deploy.prometheus_server import tool


def busy_worker(bars: int) -> WorkerMetrics:
    metrics = WorkerMetrics()
    metrics.bars_consumed.inc(bars)
    metrics.processing.observe(0.01)
    metrics.model_info.info({"name": "arima", "version": "core"})
    metrics.rolling_mae.labels("AAPL", "arima").set(1.5)
    return metrics


def page_of(metrics: WorkerMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_every_series_of_every_process_is_served_once_under_its_process_label() -> None:
    workers = {"0": busy_worker(5), "1": busy_worker(7)}
    pooled = pooled_exposition({name: page_of(m) for name, m in workers.items()}).decode()
    families = list(text_string_to_metric_families(pooled))
    assert len({f.name for f in families}) == len(families)  # one HELP/TYPE per family
    single = {f.name: len(f.samples) for f in text_string_to_metric_families(page_of(workers["0"]))}
    assert {f.name: len(f.samples) for f in families} == {name: 2 * n for name, n in single.items()}
    consumed = {s.labels["process"]: s.value for f in families for s in f.samples
                if s.name == "forecaster_bars_consumed_total"}
    assert consumed == {"0": 5.0, "1": 7.0}
    buckets = Counter(s.labels["process"] for f in families for s in f.samples
                      if s.name == "forecaster_processing_seconds_bucket")
    assert buckets["0"] == buckets["1"] > 1


def test_the_pooled_page_passes_promtool() -> None:
    pool = PoolMetrics(2)
    pool.restarts.labels("1").inc()
    pooled = pooled_exposition({"0": page_of(busy_worker(5)), "1": page_of(busy_worker(7))},
                               pool.registry.collect())
    checked = subprocess.run([tool("promtool"), "check", "metrics"], input=pooled, capture_output=True,
                             check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_process_that_does_not_answer_is_left_out_and_marked_down() -> None:
    running = busy_worker(5)
    port = free_port()
    running.serve("127.0.0.1", port)
    silent = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there
    children = {"0": f"http://127.0.0.1:{port}/metrics", "1": silent, "2": None}
    sock = listen("127.0.0.1", 0, what="metrics", setting="-", option="-")
    server = PooledMetricsServer(sock, PoolMetrics(3), lambda: children)
    server.serve_in_background()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            page = response.read().decode()
    finally:
        server.close()
    samples = [s for f in text_string_to_metric_families(page) for s in f.samples]
    up = {s.labels["process"]: s.value for s in samples if s.name == "forecaster_worker_process_up"}
    assert up == {"0": 1.0, "1": 0.0, "2": 0.0}
    consumed = [s for s in samples if s.name == "forecaster_bars_consumed_total"]
    assert [(s.labels, s.value) for s in consumed] == [({"process": "0"}, 5.0)]
