"""The records a worker should emit (the backtest's) and what it did emit, for stream and fault tests."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from pathlib import Path

import pytest

from forecaster.settings import Settings
from models.backtest import run_backtest
from models.core.config import CoreConfig
from producers.readers import ReadResult, read_csv_bars
from producers.replay import replay
from tests.kafka_helpers import read_topic
from tests.stream.worker_process import WorkerProcess

Key = tuple[str, str, str]

#: The worker's table stores: Faust's memory store (the default) and RocksDB (the rocksdb extra),
#: whose reads, unlike the memory store's, go to the partition of the event they are made under.
STORES = [pytest.param("memory://", id="memory"), pytest.param("rocksdb://", id="rocksdb")]


def bokeh_slice(data_dir: Path, tickers: tuple[str, ...]) -> ReadResult:
    """``tickers`` over 2011-2012 of the bokeh sample: about 500 bars each."""
    return read_csv_bars([data_dir / "bokeh-stocks.csv.gz"], tickers=tickers,
                         start=dt.date(2011, 1, 1), end=dt.date(2012, 12, 31))


def record_key(record: dict) -> Key:
    """A prediction or score is identified by its type, ticker and the day it was made."""
    return (record["record_type"], record["ticker"], record["as_of"])


def expected_records(result: ReadResult, settings: Settings) -> dict[Key, dict]:
    """What an uninterrupted worker emits: the backtest's records (the stream == backtest test)."""
    backtest = run_backtest(result.bars, CoreConfig.from_settings(settings))
    return {record_key(r): r for r in [*backtest.predictions, *backtest.scores]}


def only_days(result: ReadResult, keep) -> ReadResult:
    """The bars of ``result`` whose date passes ``keep``, as a read of their own."""
    bars = [bar for bar in result.bars if keep(bar.date)]
    return ReadResult(bars=bars, dead_letters=[], rows_read=len(bars), filtered=0)


def streamed_records(settings: Settings) -> list[dict]:
    """Every record on the predictions topic, without the worker's wall-clock field."""
    records = []
    for *_, value in read_topic(settings, settings.topic_predictions):
        value = dict(value)
        value.pop("produced_at")
        records.append(value)
    return records


def wait_for_records(settings: Settings, keys: set[Key], worker: WorkerProcess,
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
            raise AssertionError(diagnosis(settings, missing, worker))
        time.sleep(0.5)


def diagnosis(settings: Settings, missing: set[Key], worker: WorkerProcess) -> str:
    """What a test that waited in vain needs to tell slowness from loss: which records are missing
    per ticker, what the worker refused, how far it got, and its log."""
    per_ticker = Counter(ticker for _, ticker, _ in missing)
    first = {t: min(day for _, ticker, day in missing if ticker == t) for t in per_ticker}
    refused = Counter(value["reason"] for *_, value in read_topic(settings, settings.topic_dlq))
    try:
        consumed = [line for line in worker.metrics(timeout_s=5).splitlines()
                    if line.startswith(("forecaster_bars_consumed_total", "forecaster_consumer_lag{"))]
    except OSError as error:
        consumed = [f"unavailable: {error}"]
    return (f"{len(missing)} records missing: {dict(per_ticker)}, first missing day {first}; "
            f"dead letters {dict(refused)}; worker metrics {consumed}\n{worker.output()}")


def assert_same_as_backtest(records: list[dict], expected: dict[Key, dict]) -> int:
    """Every streamed record equals the backtest's, none is missing; returns how many were repeats
    (at-least-once delivery may repeat a record, always identical)."""
    for record in records:
        assert record == expected[record_key(record)], record_key(record)
    counts = Counter(record_key(r) for r in records)
    assert counts.keys() == expected.keys()
    return sum(n - 1 for n in counts.values())


def replay_2011_and_wait(bars: ReadResult, settings: Settings, expected: dict[Key, dict],
                         worker: WorkerProcess) -> None:
    """Replay the first year of a :func:`bokeh_slice` and wait for the worker's predictions of it."""
    replay(only_days(bars, lambda day: day.year == 2011), settings, progress=False)
    wait_for_records(settings, {k for k in expected if k[0] == "prediction" and k[2] < "2012"}, worker)
