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
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
import yaml
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from forecaster.kafka.broker import BrokerSecurity, LocalBroker, free_port
from forecaster.kafka.client import kafka_python_options
from forecaster.kafka.topics import create_topics
from forecaster.settings import Settings
from models.core.bar import Bar
from producers.replay import replay
from tests.deploy.observability import RULES_DIR
from tests.deploy.prometheus_server import PrometheusServer
from tests.kafka_helpers import read_topic
from tests.observed import TICKERS, replay_and_wait, resampled_bars, scraped_worker
from tests.worker import (
    WorkerProcess,
    as_read,
    assert_same_as_backtest,
    expected_records,
    finished,
    replay_in_background,
    wait_for_records,
    wait_until,
)

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


class JoiningBroker(LocalBroker):
    """A broker-only node ``node_id`` in the KRaft cluster of ``first`` (its controller): the second
    replica that ``min.insync.replicas=2`` needs to mean anything. Kafka caps the setting at a
    topic's replica count, so on a single broker it never refuses a write."""

    def __init__(self, data_dir: Path, first: LocalBroker, node_id: int = 2) -> None:
        super().__init__(data_dir)
        self.first = first
        self.node_id = node_id

    def _write_config(self, port: int, controller_port: int, security: BrokerSecurity | None) -> None:
        assert security is None, "the joining node copies the first's PLAINTEXT configuration"
        # The first node's configuration, as a broker of its own; the controller stays the first's.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.first.config_file.read_text()
        for key, value in {"process.roles": "broker", "node.id": str(self.node_id),
                           "listeners": f"PLAINTEXT://127.0.0.1:{port}",
                           "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
                           "log.dirs": str(self.log_dir)}.items():
            config, found = re.subn(rf"^{re.escape(key)}=.*$", f"{key}={value}", config, flags=re.M)
            assert found == 1, f"{key} is not set once in {self.first.config_file}"
        self.config_file.write_text(config)

    def _format(self, java: str, libs: Path, security: BrokerSecurity | None) -> None:
        meta = (self.first.log_dir / "meta.properties").read_text()
        cluster_id = re.search(r"^cluster\.id=(.+)$", meta, flags=re.M)
        assert cluster_id, meta
        result = subprocess.run(
            [java, *self._jvm_options(), "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
             f"--cluster-id={cluster_id[1]}", f"--config={self.config_file}"],
            capture_output=True, text=True, check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def in_sync_replicas(settings: Settings, topic: str) -> set[tuple[int, ...]]:
    """The sets of in-sync replicas (broker ids) that the partitions of ``topic`` have."""
    admin = KafkaAdminClient(**kafka_python_options(settings))
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    return {tuple(sorted(p["isr_nodes"])) for p in described["partitions"]}


def replicate(settings: Settings, topic: str, brokers: list[int], min_insync: int) -> None:
    """Give every partition of ``topic`` the replicas ``brokers`` (the first leads) and require
    ``min_insync`` of them in sync for a write with acks from all replicas."""
    admin = KafkaAdminClient(**kafka_python_options(settings))
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                            configs={"min.insync.replicas": str(min_insync)})])
        partitions = range(len(admin.describe_topics([topic])[0]["partitions"]))
        refused = {tp: error for tp, error in admin.alter_partition_reassignments(
            {TopicPartition(topic, p): brokers for p in partitions}).items() if error is not None}
        assert not refused, refused
    finally:
        admin.close()


def test_outputs_refused_by_the_broker_fire_stalled_and_lag_growing(data_dir: Path, settings: Settings,
                                                                    tmp_path: Path) -> None:
    # The predictions topic gets a second replica on a second broker and needs both in sync
    # (min.insync.replicas=2); that broker stops. The worker's outputs (acks from all replicas)
    # are refused with NOT_ENOUGH_REPLICAS, which is retriable: its batch waits, alive and scraped,
    # while the feed goes on. The broker comes back: the batch goes through and the worker catches up.
    bars = resampled_bars(data_dir, shift=False)
    before = 100 * len(TICKERS)  # past the ARIMA window: predictions flow before the fault
    expected = expected_records(as_read(bars), settings)
    first = LocalBroker(tmp_path / "kafka-1")
    second = JoiningBroker(tmp_path / "kafka-2", first)
    try:
        settings = settings.replace(bootstrap=first.start(port=free_port()).bootstrap)
        # The worker's own topics (changelogs, group offsets) live on the first broker only: the
        # second joins once they exist, and only the predictions topic is replicated to it.
        create_topics(settings)
        with watched(settings, tmp_path) as (worker, prometheus):
            replay_and_wait(bars[:before], settings, worker, prometheus)
            second.start(port=free_port())  # any free port: on each start it registers its address anew
            replicate(settings, settings.topic_predictions, brokers=[1, 2], min_insync=2)
            wait_until(lambda: in_sync_replicas(settings, settings.topic_predictions) == {(1, 2)},
                       "the second broker is not in sync", worker)
            second.stop()
            wait_until(lambda: in_sync_replicas(settings, settings.topic_predictions) == {(1,)},
                       "the second broker is still in sync after its stop", worker)
            delivered = len(read_topic(settings, settings.topic_predictions))

            thread, outcome = replay_in_background(as_read(bars[before:]), settings, rate=20.0)
            wait_firing(prometheus, "ForecasterLagGrowing", worker)
            wait_firing(prometheus, "ForecasterStalled", worker)
            assert len(read_topic(settings, settings.topic_predictions)) == delivered
            assert "NotEnoughReplicas" in worker.output()  # the refusal, retried: what holds the batch

            second.start(port=free_port())
            finished(thread, outcome)
            records = wait_for_records(settings, set(expected), worker)
            wait_until(lambda: not {"ForecasterStalled", "ForecasterLagGrowing"} & firing(prometheus).keys(),
                       "ForecasterStalled or ForecasterLagGrowing still fires", worker)
    finally:
        second.stop()
        first.stop()
    assert assert_same_as_backtest(records, expected) == 0
