"""The shipped alert rules on a real worker scraped by a real Prometheus: silent on a healthy replay,
firing on the faults they are for, injected for real.

The feed is real daily returns resampled day by day (``resampled_bars`` of tests/observed.py).
Prometheus loads ``deploy/prometheus/rules`` with every expression as shipped and only the ``for:``
durations shortened to :data:`FOR` (a replay takes seconds, not hours); promtool's scenarios
(deploy/prometheus/tests) check the real durations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
import yaml
from kafka import KafkaProducer

from forecaster.kafka.client import kafka_python_options
from forecaster.settings import Settings
from models.core.bar import Bar
from producers.replay import replay
from tests.deploy.observability import RULES_DIR
from tests.deploy.prometheus_server import PrometheusServer
from tests.observed import TICKERS, replay_and_wait, resampled_bars, scraped_worker
from tests.worker import WorkerProcess, as_read, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FOR = "15s"
FOR_S = 15.0
ALERT_TIMEOUT_S = 240.0


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    # A short ARIMA window and drift windows that a 600-day replay fills (as in test_observability);
    # the Page-Hinkley threshold is the shipped default (20, there, alarms on this healthy feed).
    return kafka_settings.replace(window=60, refit_every=10, drift_window=250, rolling_window=20)


def shortened_rules(path: Path) -> Path:
    """The shipped rules with every ``for:`` set to :data:`FOR`, written to ``path``."""
    groups = []
    for rules_file in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(rules_file.read_text())["groups"]:
            group["rules"] = [{**rule, "for": FOR} if "for" in rule else rule for rule in group["rules"]]
            groups.append(group)
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


@contextmanager
def watched(settings: Settings, tmp_path: Path) -> Iterator[tuple[WorkerProcess, PrometheusServer]]:
    rules = shortened_rules(tmp_path / "rules.yml")
    with scraped_worker(settings, tmp_path, [rules]) as (worker, prometheus):
        # Counters scraped at zero before the feed: an increase() counts from its first sample.
        wait_until(lambda: bool(prometheus.values("forecaster_scores_total")), "no scrape of the worker",
                   worker, timeout_s=ALERT_TIMEOUT_S)
        yield worker, prometheus


def firing(prometheus: PrometheusServer) -> dict[str, list[dict[str, str]]]:
    """Labels of the firing alerts, by name."""
    found: dict[str, list[dict[str, str]]] = {}
    for alert in prometheus.api("alerts")["data"]["alerts"]:
        if alert["state"] == "firing":
            found.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
    return found


def wait_firing(prometheus: PrometheusServer, name: str, worker: WorkerProcess | None) -> list[dict]:
    wait_until(lambda: name in firing(prometheus), f"{name} is not firing (firing: {firing(prometheus)})",
               worker, timeout_s=ALERT_TIMEOUT_S)
    return firing(prometheus)[name]


def evaluated_since(prometheus: PrometheusServer, since: float) -> bool:
    """Every rule has been evaluated after the Prometheus time ``since``."""
    rules = [rule for group in prometheus.api("rules")["data"]["groups"] for rule in group["rules"]]
    stamps = [dt.datetime.fromisoformat(rule["lastEvaluation"][:19] + "+00:00").timestamp() for rule in rules]
    return bool(stamps) and min(stamps) > since


def test_a_healthy_replay_fires_no_alert(data_dir: Path, settings: Settings, tmp_path: Path) -> None:
    with watched(settings, tmp_path) as (worker, prometheus):
        replay_and_wait(resampled_bars(data_dir, shift=False), settings, worker, prometheus)
        (now,) = prometheus.values("vector(time())")
        # Whatever held after the last bar has had its `for:` to turn into a firing alert.
        wait_until(lambda: evaluated_since(prometheus, now + FOR_S + 2), "rules not evaluated", worker,
                   timeout_s=ALERT_TIMEOUT_S)
        assert firing(prometheus) == {}
        assert prometheus.values('count_over_time(ALERTS{alertstate="firing"}[1h])') == []
        assert prometheus.values("sum(increase(forecaster_scores_total[1h]))")[0] > 1500


def test_a_volatility_jump_fires_feature_drift(data_dir: Path, settings: Settings, tmp_path: Path) -> None:
    with watched(settings, tmp_path) as (worker, prometheus):
        replay_and_wait(resampled_bars(data_dir, shift=True), settings, worker, prometheus)
        assert wait_firing(prometheus, "ForecasterFeatureDrift", worker)


def late_jump(bars: list[Bar], last_days: int, scale: float) -> list[Bar]:
    """``bars`` whose daily moves (close to close, and the day's range) grow ``scale`` times over
    each ticker's last ``last_days`` bars."""
    total = Counter(bar.ticker for bar in bars)
    seen: Counter[str] = Counter()
    last: dict[str, tuple[float, float]] = {}  # ticker -> previous (original close, new close)
    out = []
    for bar in bars:
        seen[bar.ticker] += 1
        moved = bar
        if seen[bar.ticker] > total[bar.ticker] - last_days:
            original, new = last[bar.ticker]
            close = new * (bar.close / original) ** scale
            moved = dataclasses.replace(bar, close=close, open=close * (bar.open / bar.close) ** scale,
                                        high=close * (bar.high / bar.close) ** scale,
                                        low=close * (bar.low / bar.close) ** scale)
        last[bar.ticker] = (bar.close, moved.close)
        out.append(moved)
    return out


def test_a_late_volatility_jump_fires_error_drift(data_dir: Path, settings: Settings, tmp_path: Path) -> None:
    # The error drift state is held for a rolling window of scores after an alarm, so the jump
    # comes at the end of the replay: 8 times the moves over the last 15 days.
    with watched(settings, tmp_path) as (worker, prometheus):
        replay_and_wait(late_jump(resampled_bars(data_dir, shift=False), last_days=15, scale=8.0), settings,
                        worker, prometheus)
        drifting = {labels["ticker"] for labels in wait_firing(prometheus, "ForecasterErrorDrift", worker)}
        assert drifting <= set(TICKERS) and drifting


def test_an_over_differenced_arima_fires_worse_than_naive(data_dir: Path, settings: Settings,
                                                           tmp_path: Path) -> None:
    # ARIMA(2, 2, 0) on log closes extrapolates yesterday's move: MASE about 1.17 on this feed.
    with watched(settings.replace(arima_order=(2, 2, 0)), tmp_path) as (worker, prometheus):
        replay_and_wait(resampled_bars(data_dir, shift=False), settings, worker, prometheus)
        assert [labels["model"] for labels in wait_firing(prometheus, "ForecasterWorseThanNaive", worker)] \
            == ["arima"]


def stale(bars: list[Bar], after_days: int) -> list[Bar]:
    """``bars`` whose prices stop moving after each ticker's first ``after_days`` bars."""
    seen: Counter[str] = Counter()
    last: dict[str, float] = {}
    out = []
    for bar in bars:
        seen[bar.ticker] += 1
        if seen[bar.ticker] > after_days:
            close = last[bar.ticker]
            bar = dataclasses.replace(bar, open=close, high=close, low=close, close=close)
        last[bar.ticker] = bar.close
        out.append(bar)
    return out


def test_a_stale_feed_fires_interval_miscalibration(data_dir: Path, settings: Settings,
                                                    tmp_path: Path) -> None:
    with watched(settings, tmp_path) as (worker, prometheus):
        replay_and_wait(stale(resampled_bars(data_dir, shift=False), after_days=100), settings, worker,
                        prometheus)
        levels = {labels["level"] for labels in wait_firing(prometheus, "ForecasterIntervalMiscalibrated",
                                                            worker)}
        assert levels <= {"0.8", "0.95"} and levels


def test_poison_in_the_feed_fires_the_dead_letter_alert(data_dir: Path, settings: Settings,
                                                        tmp_path: Path) -> None:
    bars = resampled_bars(data_dir, shift=False)[:600]
    with watched(settings, tmp_path) as (worker, prometheus):
        producer = KafkaProducer(**kafka_python_options(settings), acks="all")
        for bar in bars[::20]:  # 5 % of the feed: a negative close
            producer.send(settings.topic_bars, key=bar.ticker.encode(),
                          value=orjson.dumps({**bar.to_dict(), "close": -1.0}))
        producer.flush()
        producer.close()
        replay_and_wait(bars, settings, worker, prometheus)
        assert wait_firing(prometheus, "ForecasterDeadLetterRate", worker)


def test_a_killed_worker_fires_worker_down(data_dir: Path, settings: Settings, tmp_path: Path) -> None:
    bars = resampled_bars(data_dir, shift=False)
    half = len(bars) // 2
    with watched(settings, tmp_path) as (worker, prometheus):
        replay_and_wait(bars[:half], settings, worker, prometheus)
        assert "ForecasterWorkerDown" not in firing(prometheus)
        worker.stop(signal.SIGKILL)
        replay(as_read(bars[half:]), settings, progress=False)  # the feed goes on
        (down,) = wait_firing(prometheus, "ForecasterWorkerDown", None)
        assert down["instance"] == f"{worker.settings.metrics_host}:{worker.settings.metrics_port}"
