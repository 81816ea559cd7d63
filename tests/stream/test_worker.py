"""The stream worker against the real broker: same records as the backtest, poison, duplicates,
and a stop in the middle (tests/faults/ kills it repeatedly, restarts the broker and scales out)."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sys
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from forecaster.kafka.broker import free_port
from forecaster.kafka.client import kafka_python_options
from forecaster.kafka.topics import create_topics
from forecaster.settings import Settings
from models.core.deadletter import RAW_LIMIT
from producers.readers import ReadResult
from producers.replay import replay
from stream_app.app import create_app
from tests.kafka_helpers import read_topic, wait_for_count
from tests.worker import (
    FORECASTER_WORKER,
    WorkerProcess,
    assert_same_as_backtest,
    bokeh_slice,
    expected_records,
    only_days,
    record_key,
    replay_2011_and_wait,
    streamed_records,
    wait_for_records,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TICKERS = ("AAPL", "IBM", "MSFT")


@pytest.fixture
def bars(data_dir: Path) -> ReadResult:
    return bokeh_slice(data_dir, TICKERS)


@pytest.mark.parametrize("horizons", [(1,), (1, 5, 20)], ids=["one-day", "horizons-1-5-20"])
def test_stream_equals_backtest_record_for_record(bars: ReadResult, worker_settings: Settings,
                                                  tmp_path: Path, horizons: tuple[int, ...]) -> None:
    worker_settings = worker_settings.replace(horizons=horizons)
    summary = replay(bars, worker_settings, progress=False)
    assert summary.bars_sent == len(bars.bars) > 1000
    expected = expected_records(bars, worker_settings)
    with WorkerProcess(worker_settings, tmp_path / "worker.log") as worker:
        records = wait_for_records(worker_settings, set(expected), worker)
        metrics = worker.metrics()
    assert assert_same_as_backtest(records, expected) == 0
    # No leader topic: an idle partition among the worker's fetches held back its bars (1.5 s).
    admin = KafkaAdminClient(**kafka_python_options(worker_settings))
    try:
        leaders = [t for t in admin.list_topics() if t.startswith(worker_settings.app_id) and "leader" in t]
        assert leaders == []
    finally:
        admin.close()
    assert f"forecaster_bars_consumed_total {float(len(bars.bars))}" in metrics
    # Each ticker's state went to the changelog partition of its own bars partition, where the
    # worker that owns the ticker after a rebalance looks for it (batches mix partitions).
    bars_topic = read_topic(worker_settings, worker_settings.topic_bars)
    bar_partition = {key: partition for partition, _, key, _ in bars_topic}
    changelog = read_topic(worker_settings, f"{worker_settings.app_id}-ticker_state-changelog")
    assert {key for _, _, key, _ in changelog} == set(TICKERS)
    assert all(partition == bar_partition[key] for partition, _, key, _ in changelog)
    # Each partition's position (the offset after its last handled bar) went to its own partition
    # too, and the latest one is the end of the partition: every bar handled, none skipped.
    ends: dict[int, int] = {}
    for partition, offset, *_ in bars_topic:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    positions = {}
    for partition, _, key, value in read_topic(worker_settings,
                                               f"{worker_settings.app_id}-source_positions-changelog"):
        assert key == f"{worker_settings.topic_bars}/{partition}"
        positions[partition] = value
    assert positions == ends
    # Predictions of a ticker come out in date order, a bar's in ascending horizon.
    for ticker in TICKERS:
        made = [(r["as_of"], r["horizon"]) for r in records
                if r["ticker"] == ticker and r["record_type"] == "prediction"]
        assert made == sorted(made)
        assert {h for _, h in made} == set(horizons)


def test_poison_messages_and_repeated_bars_are_dead_lettered(worker_settings: Settings, tmp_path: Path,
                                                             bars: ReadResult) -> None:
    first = [b for b in bars.bars if b.ticker == "IBM"][:5]
    good = [orjson.dumps(b.to_dict()) for b in first]
    nan_bar = {**first[0].to_dict(), "date": "2013-01-02", "close": "NaN"}
    poison = {
        "not_json": b"this is not json",
        "missing_field": orjson.dumps({"ticker": "IBM", "date": "2013-01-03"}),
        "not_finite": orjson.dumps(nan_bar),
        "non_positive_price": orjson.dumps({**first[0].to_dict(), "date": "2013-01-04", "open": -1.0}),
    }
    # Near the 1 MB a stock broker takes (the local one takes 10), and six times that as JSON (each
    # NUL escaped as \\u0000): its dead letter must still fit, or the worker could only stop on it,
    # again at each restart.
    oversized = b"\x00" * 900_000
    admin = KafkaAdminClient(**kafka_python_options(worker_settings))
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, worker_settings.topic_dlq,
                                            configs={"max.message.bytes": str(1024 * 1024 + 12)})])
    finally:
        admin.close()
    producer = KafkaProducer(**kafka_python_options(worker_settings), acks="all")
    for value in [*good, *poison.values(), oversized, good[2], good[4]]:
        producer.send(worker_settings.topic_bars, key=b"IBM", value=value)
    after = {**first[4].to_dict(), "date": "2013-01-07"}
    producer.send(worker_settings.topic_bars, key=b"IBM", value=orjson.dumps(after))
    # A key that is not UTF-8, on a bar whose ticker is what it decodes to with replacement.
    not_utf8 = {**first[0].to_dict(), "ticker": "\ufffd"}
    producer.send(worker_settings.topic_bars, key=b"\xff", value=orjson.dumps(not_utf8))
    producer.flush()
    producer.close()
    expected_reasons = sorted([*poison, "not_json", "out_of_order", "duplicate", "bad_ticker"])
    with WorkerProcess(worker_settings, tmp_path / "worker.log") as worker:
        records = wait_for_records(worker_settings, {("prediction", "IBM", "2013-01-07", 1)}, worker)
        wait_for_count(worker_settings, worker_settings.topic_dlq, len(expected_reasons))
        letters = [value for *_, value in read_topic(worker_settings, worker_settings.topic_dlq)]
        worker.assert_alive()
    reasons = sorted(letter["reason"] for letter in letters)
    assert reasons == expected_reasons
    assert all(letter["source"].startswith(f"{worker_settings.topic_bars}/") for letter in letters)
    short, cut = sorted((letter for letter in letters if letter["reason"] == "not_json"),
                        key=lambda letter: len(letter["raw"]))
    assert short["raw"] == "this is not json"
    assert cut["raw"] == "\x00" * RAW_LIMIT and "first 16,384 of 900,000 characters" in cut["detail"]
    predictions = [r for r in records if r["record_type"] == "prediction"]
    assert [r["as_of"] for r in predictions] == [b.date.isoformat() for b in first] + ["2013-01-07"]


def test_a_worker_stopped_by_sigterm_resumes_without_loss(bars: ReadResult, worker_settings: Settings,
                                                          tmp_path: Path) -> None:
    replay(bars, worker_settings, progress=False)
    expected = expected_records(bars, worker_settings)
    some = {k for k in expected if k[1] == "AAPL"} | {k for k in expected if k[1] == "MSFT"}
    with WorkerProcess(worker_settings, tmp_path / "first.log") as first:
        # Wait for a part of the work, then stop the worker in the middle of the rest.
        def a_quarter_done() -> bool:
            return len({record_key(r) for r in streamed_records(worker_settings)} & some) >= len(some) // 4

        wait_until(a_quarter_done, "a quarter of AAPL's and MSFT's records did not come", first)
        assert first.stop(signal.SIGTERM) == 0, "a clean stop on SIGTERM"
    with WorkerProcess(worker_settings, tmp_path / "second.log") as second:
        records = wait_for_records(worker_settings, set(expected), second)
    assert_same_as_backtest(records, expected)


def test_a_worker_moved_to_another_bars_topic_reads_it_from_its_start(bars: ReadResult,
                                                                      worker_settings: Settings,
                                                                      tmp_path: Path) -> None:
    # Same application id, so the same tables: the handled offsets of the first topic must not be
    # taken for those of the second, whose first messages would then be skipped as handled.
    expected = expected_records(bars, worker_settings)
    with WorkerProcess(worker_settings, tmp_path / "first.log") as worker:
        replay_2011_and_wait(bars, worker_settings, expected, worker)
    moved = worker_settings.replace(topic_bars=f"{worker_settings.topic_bars}-next")
    create_topics(moved)
    replay(only_days(bars, lambda day: day.year == 2012), moved, progress=False)
    with WorkerProcess(moved, tmp_path / "second.log") as worker:
        records = wait_for_records(moved, set(expected), worker)
    assert assert_same_as_backtest(records, expected) == 0


def test_fausts_own_cli_runs_the_same_worker(bars: ReadResult, kafka_settings: Settings,
                                            tmp_path: Path) -> None:
    settings = kafka_settings.replace(window=60, refit_every=10, model="arima")
    january = only_days(bars, lambda day: day < dt.date(2011, 2, 1))
    expected = expected_records(january, settings)
    replay(january, settings, progress=False)
    command = [sys.executable, "-m", "faust", "-A", "stream_app.app", "worker", "-l", "warn", "--without-web"]
    with WorkerProcess(settings, tmp_path / "faust.log", command) as worker:
        records = wait_for_records(settings, set(expected), worker)
        assert "forecaster_bars_consumed_total" in worker.metrics()  # on FORECASTER_METRICS_PORT
    assert assert_same_as_backtest(records, expected) == 0


def test_the_workers_options_override_the_environment(bars: ReadResult, kafka_settings: Settings,
                                                      tmp_path: Path) -> None:
    settings = kafka_settings.replace(model="naive")
    january = only_days(bars, lambda day: day < dt.date(2011, 2, 1))
    replay(january, settings, progress=False)
    workdir, port = tmp_path / "workdir", free_port()
    worker = WorkerProcess(settings, tmp_path / "worker.log",
                           [*FORECASTER_WORKER, "--workdir", str(workdir), "--metrics-port", str(port)])
    with worker:
        # The environment names another home and metrics port; the options win.
        worker.settings = worker.settings.replace(metrics_port=port)
        wait_for_records(settings, set(expected_records(january, settings)), worker)
        assert "forecaster_bars_consumed_total" in worker.metrics()
    assert (workdir / "worker").is_dir() and not (Path(settings.home) / "worker").exists()


def test_the_changelog_topics_exist_before_the_worker_joins_its_group(kafka_settings: Settings) -> None:
    # Faust made them while its consumer joined the group; on a fresh broker the join's metadata
    # could miss one, and the table's first write then failed (0 partitions): `make demo` exited 70.
    app = create_app(kafka_settings)
    asyncio.run(app.on_first_start())  # what a worker runs before it starts its consumer
    names = [spec.name for spec in app.changelog_topics()]
    assert names == [f"{kafka_settings.app_id}-ticker_state-changelog",
                     f"{kafka_settings.app_id}-source_positions-changelog"]
    admin = KafkaAdminClient(**kafka_python_options(kafka_settings))
    try:
        partitions = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    finally:
        admin.close()
    assert partitions == {name: kafka_settings.partitions for name in names}
    for name in names:
        assert configs["topic"][name]["cleanup.policy"]["value"] == "compact"
        assert configs["topic"][name]["segment.bytes"]["value"] == str(1024 * 1024)


def test_the_worker_keeps_logging_at_the_level_asked_for_after_start(kafka_settings: Settings,
                                                                      tmp_path: Path) -> None:
    worker = WorkerProcess(kafka_settings, tmp_path / "worker.log", [*FORECASTER_WORKER, "-l", "info"])
    with worker:
        worker.metrics()  # served by the start-up task, once it has set the log level
        assert worker.stop() == 0
    # Faust's INFO lines of the shutdown come after the start-up task; at -l warn there are none.
    assert "[INFO] [^ForecasterWorker]: Stopping" in worker.output()
