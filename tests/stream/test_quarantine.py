"""Corrupted records in the worker's changelogs, against the real broker: a state and a position that
do not decode are quarantined (dead letter with their bytes, metric), never a crash loop, and the
stream goes on from a fresh state; the consumer lag is exported once a replay is handled."""

from __future__ import annotations

import base64
import signal
from pathlib import Path

import pytest
from kafka import KafkaProducer

from forecaster.kafka.client import kafka_python_options
from forecaster.kafka.partitioning import key_partition
from forecaster.settings import Settings
from producers.readers import ReadResult
from producers.replay import replay
from tests.kafka_helpers import read_topic
from tests.worker import (
    WorkerProcess,
    assert_same_as_backtest,
    bokeh_slice,
    expected_records,
    metric,
    only_days,
    replay_2011_and_wait,
    wait_for_records,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TICKERS = ("AAPL", "IBM", "MSFT")


def test_corrupted_state_and_position_are_quarantined_and_the_stream_goes_on(
        data_dir: Path, worker_settings: Settings, tmp_path: Path) -> None:
    settings = worker_settings
    bars: ReadResult = bokeh_slice(data_dir, TICKERS)
    full = expected_records(bars, settings)
    with WorkerProcess(settings, tmp_path / "first.log") as first:
        replay_2011_and_wait(bars, settings, full, first)
        assert first.stop(signal.SIGTERM) == 0

    # AAPL's state cut short and IBM's partition's position replaced by garbage, as the last records
    # of their keys in the changelogs: what every later start recovers.
    states = f"{settings.app_id}-ticker_state-changelog"
    positions = f"{settings.app_id}-source_positions-changelog"
    aapl = key_partition(b"AAPL", settings.partitions)
    ibm = key_partition(b"IBM", settings.partitions)
    assert aapl != ibm
    stored = [value for partition, _, key, value in read_topic(settings, states) if key == "AAPL"]
    truncated = stored[-1][: len(stored[-1]) // 2]
    garbage = b"\x00\xffnot an offset\x9c"
    producer = KafkaProducer(**kafka_python_options(settings), acks="all")
    producer.send(states, key=b"AAPL", value=truncated, partition=aapl)
    producer.send(positions, key=f"{settings.topic_bars}/{ibm}".encode(), value=garbage, partition=ibm)
    producer.flush()
    producer.close()

    # AAPL starts afresh: its 2012 records are a backtest of its 2012 bars alone, and the prediction
    # of its last 2011 day is never scored. IBM's partition is read again from its start: its 2011
    # bars are refused by IBM's state (dead letters), none applied twice, and 2012 goes on as before.
    fresh = expected_records(only_days(bars, lambda day: day.year == 2012), settings)
    last_2011 = max(bar.date for bar in bars.bars if bar.date.year == 2011).isoformat()
    expected = {key: record for key, record in full.items()
                if key[1] != "AAPL" or (key[2] < "2012" and key != ("score", "AAPL", last_2011, 1))}
    expected |= {key: record for key, record in fresh.items() if key[1] == "AAPL"}
    with WorkerProcess(settings, tmp_path / "second.log") as second:
        replay(only_days(bars, lambda day: day.year == 2012), settings, progress=False)
        records = wait_for_records(settings, set(expected), second)
        assert_same_as_backtest(records, expected)
        page = second.metrics()
        assert metric(page, "forecaster_quarantined_total", kind="state") == 1.0
        assert metric(page, "forecaster_quarantined_total", kind="position") == 1.0
        assert metric(page, "forecaster_dead_letters_total", reason="corrupt_state") == 1.0
        assert metric(page, "forecaster_dead_letters_total", reason="corrupt_position") == 1.0
        # The lag of every partition with bars is exported, and nothing is left behind.
        with_bars = {key_partition(ticker.encode(), settings.partitions) for ticker in TICKERS}
        wait_until(lambda: all(metric(second.metrics(), "forecaster_consumer_lag", partition=str(p)) == 0.0
                               for p in with_bars),
                   "the consumer lag of the partitions with bars is not exported at 0", second)
        second.assert_alive()

    letters = [value for *_, value in read_topic(settings, settings.topic_dlq)]
    corrupt = {letter["reason"]: letter for letter in letters if letter["reason"].startswith("corrupt_")}
    assert corrupt.keys() == {"corrupt_state", "corrupt_position"}
    assert base64.b64decode(corrupt["corrupt_state"]["raw"]) == truncated
    assert corrupt["corrupt_state"]["ticker"] == "AAPL"
    assert corrupt["corrupt_state"]["source"] == f"{states}/{aapl}"
    assert base64.b64decode(corrupt["corrupt_position"]["raw"]) == garbage
    assert corrupt["corrupt_position"]["source"] == f"{positions}/{ibm}"
    ibm_2011 = sum(1 for bar in bars.bars if bar.ticker == "IBM" and bar.date.year == 2011)
    repeats = [letter for letter in letters if letter["reason"] in ("duplicate", "out_of_order")]
    assert len(repeats) == ibm_2011  # each IBM bar of 2011 met again once, refused, not applied
