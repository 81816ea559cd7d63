"""The stream worker against the real broker: same records as the backtest, poison, duplicates,
crashes and scale-out."""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from forecaster.kafka.client import kafka_python_options
from forecaster.settings import Settings
from models.backtest import run_backtest
from models.core.config import CoreConfig
from producers.readers import ReadResult, read_csv_bars
from producers.replay import replay
from tests.kafka_helpers import read_topic
from tests.stream.worker_process import WorkerProcess

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TICKERS = ("AAPL", "IBM", "MSFT")


@pytest.fixture
def bars(data_dir: Path) -> ReadResult:
    """Three tickers over two years of the bokeh sample: about 1,500 bars."""
    return read_csv_bars([data_dir / "bokeh-stocks.csv.gz"], tickers=TICKERS,
                         start=dt.date(2011, 1, 1), end=dt.date(2012, 12, 31))


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    # A short window and refit interval keep warm-up short, so most records come from the ARIMA.
    return kafka_settings.replace(window=60, refit_every=10, batch_size=200, model="arima")


def record_key(record: dict) -> tuple[str, str, str]:
    return (record["record_type"], record["ticker"], record["as_of"])


def expected_records(result: ReadResult, settings: Settings) -> dict[tuple[str, str, str], dict]:
    backtest = run_backtest(result.bars, CoreConfig.from_settings(settings))
    return {record_key(r): r for r in [*backtest.predictions, *backtest.scores]}


def streamed_records(settings: Settings) -> list[dict]:
    records = []
    for *_, value in read_topic(settings, settings.topic_predictions):
        value = dict(value)
        value.pop("produced_at")
        records.append(value)
    return records


def wait_for_records(settings: Settings, keys: set, worker: WorkerProcess,
                     timeout_s: float = 180.0) -> list[dict]:
    """Poll the predictions topic until every expected record is there."""
    deadline = time.monotonic() + timeout_s
    while True:
        worker.assert_alive()
        records = streamed_records(settings)
        missing = keys - {record_key(r) for r in records}
        if not missing:
            return records
        if time.monotonic() > deadline:
            example = sorted(missing)[:3]
            raise AssertionError(f"{len(missing)} records missing, e.g. {example}\n{worker.output()}")
        time.sleep(0.5)


def assert_same_as_backtest(records: list[dict], expected: dict) -> int:
    """Every streamed record equals the backtest's; returns the number of (identical) duplicates."""
    seen: dict[tuple[str, str, str], dict] = {}
    duplicates = 0
    for record in records:
        key = record_key(record)
        assert record == expected[key], key
        if key in seen:
            duplicates += 1
        seen[key] = record
    assert seen.keys() == expected.keys()
    return duplicates


def test_stream_equals_backtest_record_for_record(bars: ReadResult, settings: Settings,
                                                  tmp_path: Path) -> None:
    summary = replay(bars, settings, progress=False)
    assert summary.bars_sent == len(bars.bars) > 1000
    expected = expected_records(bars, settings)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        records = wait_for_records(settings, set(expected), worker)
        metrics = worker.metrics()
    assert assert_same_as_backtest(records, expected) == 0
    assert f"forecaster_bars_consumed_total {float(len(bars.bars))}" in metrics
    # Predictions of a ticker come out in date order.
    for ticker in TICKERS:
        dates = [r["as_of"] for r in records if r["ticker"] == ticker and r["record_type"] == "prediction"]
        assert dates == sorted(dates)


def test_poison_messages_and_repeated_bars_are_dead_lettered(settings: Settings, tmp_path: Path,
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
    producer = KafkaProducer(**kafka_python_options(settings), acks="all")
    for value in [*good, *poison.values(), good[2], good[4]]:
        producer.send(settings.topic_bars, key=b"IBM", value=value)
    after = {**first[4].to_dict(), "date": "2013-01-07"}
    producer.send(settings.topic_bars, key=b"IBM", value=orjson.dumps(after))
    producer.flush()
    producer.close()
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        records = wait_for_records(settings, {("prediction", "IBM", "2013-01-07")}, worker)
        letters = [value for *_, value in read_topic(settings, settings.topic_dlq)]
        worker.assert_alive()
    reasons = sorted(letter["reason"] for letter in letters)
    assert reasons == sorted([*poison, "out_of_order", "duplicate"])
    assert all(letter["source"].startswith(f"{settings.topic_bars}/") for letter in letters)
    assert next(letter for letter in letters if letter["reason"] == "not_json")["raw"] == "this is not json"
    predictions = [r for r in records if r["record_type"] == "prediction"]
    assert [r["as_of"] for r in predictions] == [b.date.isoformat() for b in first] + ["2013-01-07"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_a_stopped_worker_resumes_without_loss(bars: ReadResult, settings: Settings, tmp_path: Path,
                                               sig: int) -> None:
    replay(bars, settings, progress=False)
    expected = expected_records(bars, settings)
    some = {k for k in expected if k[1] == "AAPL"} | {k for k in expected if k[1] == "MSFT"}
    first = WorkerProcess(settings, tmp_path / "first.log").start()
    try:
        # Wait for a part of the work, then stop the worker in the middle of the rest.
        deadline = time.monotonic() + 180
        while len({record_key(r) for r in streamed_records(settings)} & some) < len(some) // 4:
            first.assert_alive()
            assert time.monotonic() < deadline, first.output()
            time.sleep(0.2)
    finally:
        first.stop(sig)
    with WorkerProcess(settings, tmp_path / "second.log") as second:
        records = wait_for_records(settings, set(expected), second)
    assert_same_as_backtest(records, expected)


def test_two_workers_split_the_partitions_and_the_survivor_takes_over(bars: ReadResult, settings: Settings,
                                                                         tmp_path: Path) -> None:
    expected = expected_records(bars, settings)
    with WorkerProcess(settings, tmp_path / "a.log") as a, WorkerProcess(settings, tmp_path / "b.log") as b:
        a.metrics()
        b.metrics()
        replay(only(bars, 2011), settings, progress=False)
        half_keys = {k for k in expected if k[0] == "prediction" and k[2] < "2012"}
        wait_for_records(settings, half_keys, a)
        consumed = [_bars_consumed(w.metrics()) for w in (a, b)]
        assert all(c > 0 for c in consumed), f"both workers take part: {consumed}"
        b.stop(signal.SIGKILL)
        replay(only(bars, 2012), settings, progress=False)
        records = wait_for_records(settings, set(expected), a)
    assert_same_as_backtest(records, expected)


def only(result: ReadResult, year: int) -> ReadResult:
    bars = [bar for bar in result.bars if bar.date.year == year]
    return ReadResult(bars=bars, dead_letters=[], rows_read=len(bars), filtered=0)


def _bars_consumed(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("forecaster_bars_consumed_total "):
            return float(line.split()[1])
    return 0.0
