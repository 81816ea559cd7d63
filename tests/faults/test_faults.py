"""Faults against the real broker: nothing lost, nothing applied twice, repeats identical.

Each test prints a ``FIGURES`` line (records in, predictions out, lost, duplicated) that
docs/reliability.md quotes; run ``pytest -m faults -s tests/faults`` to see them. Random kill points
come from ``FORECASTER_FAULT_SEED`` (printed; set it to replay a run).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

from forecaster.kafka.broker import LocalBroker, free_port
from forecaster.kafka.client import kafka_python_options
from forecaster.kafka.topics import create_topics
from forecaster.settings import Settings
from producers.readers import ReadResult
from producers.replay import replay
from tests.kafka_helpers import read_topic
from tests.worker import (
    FORECASTER_WORKER,
    WorkerProcess,
    assert_same_as_backtest,
    bokeh_slice,
    expected_records,
    finished,
    metric,
    only_days,
    record_key,
    replay_2011_and_wait,
    replay_in_background,
    streamed_records,
    wait_for_records,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.faults, pytest.mark.slow]

TICKERS = ("AAPL", "GOOG", "IBM", "MSFT")
#: Workers log their rebalances and recoveries, which a test that waited in vain prints.
WORKER = [*FORECASTER_WORKER, "-l", "info"]


@pytest.fixture
def bars(data_dir: Path) -> ReadResult:
    return bokeh_slice(data_dir, TICKERS)


def figures(name: str, bars_in: int, records: list[dict], expected: dict, **extra: object) -> None:
    predictions = [r for r in records if r["record_type"] == "prediction"]
    unique = {record_key(r) for r in predictions}
    wanted = {k for k in expected if k[0] == "prediction"}
    print(f"FIGURES {name}: " + orjson.dumps({
        "bars_in": bars_in, "predictions_out": len(predictions), "unique_predictions": len(unique),
        "lost": len(wanted - unique), "duplicated": len(predictions) - len(unique), **extra}).decode())


def wait_until_streamed(settings: Settings, target: int, worker: WorkerProcess, outcome: list,
                        timeout_s: float = 180.0) -> None:
    """Poll until the predictions topic holds ``target`` records; a failed replay or worker fails
    the test at once, and a timeout says how far the feed and the worker got."""
    deadline = time.monotonic() + timeout_s
    while (streamed := len(streamed_records(settings))) < target:
        worker.assert_alive()
        if outcome and isinstance(outcome[0], BaseException):
            raise outcome[0]
        if time.monotonic() > deadline:
            bars_in = len(read_topic(settings, settings.topic_bars))
            raise AssertionError(f"{streamed} of {target} records after {timeout_s:.0f} s, with {bars_in} "
                                 f"bars on the topic and the replay {'done' if outcome else 'running'}; "
                                 f"the worker's log ends:\n{worker.output()}")
        time.sleep(0.1)


def test_worker_killed_three_times_during_a_replay_loses_nothing(bars: ReadResult, worker_settings: Settings,
                                                                 tmp_path: Path) -> None:
    """At horizons 1, 5 and 20: past warm-up a ticker's state holds 26 pending predictions, which each
    kill must leave recovered exactly (every late score equals the backtest's)."""
    worker_settings = worker_settings.replace(horizons=(1, 5, 20))
    seed = int(os.environ.get("FORECASTER_FAULT_SEED", time.time_ns() % 1_000_000))
    print(f"FORECASTER_FAULT_SEED={seed}")
    rng = random.Random(seed)
    expected = expected_records(bars, worker_settings)
    # Kill points: three random progress marks (records emitted) spread over the replay, which is
    # paced so that it usually lasts longer than three worker restarts (about 35 s).
    kill_points = []
    targets = sorted(rng.sample(range(len(expected) // 10, len(expected) * 8 // 10), 3))
    thread, outcome = replay_in_background(bars, worker_settings, rate=60.0)
    kills = 0
    for attempt, target in enumerate(targets):
        with WorkerProcess(worker_settings, tmp_path / f"worker-{attempt}.log", WORKER) as worker:
            # Each incarnation works before it dies: past its mark, and at least a batch's worth,
            # unless its predecessors already emitted every record (a slow restart on a busy machine).
            target = max(target, len(streamed_records(worker_settings)) + worker_settings.batch_size // 2)
            target = min(target, len(expected))
            wait_until_streamed(worker_settings, target, worker, outcome)
            worker.stop(signal.SIGKILL)
            kills += 1
            kill_points.append(target)
    summary = finished(thread, outcome)
    with WorkerProcess(worker_settings, tmp_path / "worker-last.log", WORKER) as worker:
        records = wait_for_records(worker_settings, set(expected), worker, timeout_s=300)
    duplicated = assert_same_as_backtest(records, expected)
    assert summary.bars_sent == len(bars.bars)
    figures("kill -9 x3", len(bars.bars), records, expected, kills=kills, seed=seed,
            kill_points=kill_points, repeated_records=duplicated)


def test_broker_restarted_during_a_replay_loses_nothing(bars: ReadResult, worker_settings: Settings,
                                                        tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "kafka")
    port = free_port()
    worker_settings = worker_settings.replace(bootstrap=broker.start(port=port).bootstrap)
    try:
        create_topics(worker_settings)
        expected = expected_records(bars, worker_settings)
        with WorkerProcess(worker_settings, tmp_path / "worker.log", WORKER) as worker:
            worker.metrics()
            thread, outcome = replay_in_background(bars, worker_settings, rate=400.0)
            # Stop the broker once part of the replay is through, and bring it back.
            wait_until_streamed(worker_settings, 200, worker, outcome)
            broker.stop()
            broker.start(port=port)
            summary = finished(thread, outcome)
            records = wait_for_records(worker_settings, set(expected), worker, timeout_s=300)
            letters = read_topic(worker_settings, worker_settings.topic_dlq)
            metrics = worker.metrics()
    finally:
        broker.stop()
    assert summary.accounted and summary.bars_sent == len(bars.bars)
    duplicated = assert_same_as_backtest(records, expected)
    # Bars the worker saw again after the restart were skipped as handled: no dead letter either.
    assert letters == []
    figures("broker restart", len(bars.bars), records, expected, repeated_records=duplicated,
            redelivered_bars_skipped=(metric(metrics, "forecaster_redelivered_total") or 0.0))


def test_replaying_the_same_file_twice_changes_nothing(bars: ReadResult, worker_settings: Settings,
                                                       tmp_path: Path) -> None:
    first_pass = only_days(bars, lambda day: day < dt.date(2012, 12, 1))
    last_month = only_days(bars, lambda day: day >= dt.date(2012, 12, 1))
    expected = expected_records(bars, worker_settings)
    with WorkerProcess(worker_settings, tmp_path / "worker.log", WORKER) as worker:
        replay(first_pass, worker_settings, progress=False)
        done = set(expected_records(first_pass, worker_settings))
        before = wait_for_records(worker_settings, done, worker)
        again = replay(first_pass, worker_settings, progress=False)
        # Every repeated bar ends as a dead letter of the worker; poll for all of them.
        wait_until(lambda: len(read_topic(worker_settings, worker_settings.topic_dlq)) >= again.bars_sent,
                   f"fewer than {again.bars_sent} dead letters", worker)
        letters = read_topic(worker_settings, worker_settings.topic_dlq)
        assert streamed_records(worker_settings) == before, "the second pass emitted records"
        # The state is untouched: the month after continues exactly as an uninterrupted run.
        replay(last_month, worker_settings, progress=False)
        records = wait_for_records(worker_settings, set(expected), worker)
    assert assert_same_as_backtest(records, expected) == 0
    reasons = [value["reason"] for *_, value in letters]
    assert len(reasons) == again.bars_sent == len(first_pass.bars)
    assert set(reasons) <= {"duplicate", "out_of_order"}
    figures("same file twice", 2 * len(first_pass.bars) + len(last_month.bars), records, expected,
            repeated_bars_refused=len(reasons))


def test_two_workers_split_the_partitions_and_the_survivor_takes_over(bars: ReadResult,
                                                                      worker_settings: Settings,
                                                                      tmp_path: Path) -> None:
    expected = expected_records(bars, worker_settings)
    # Workers on one host each keep their local state in a directory of their own (RocksDB locks it).
    other = worker_settings.replace(home=str(tmp_path / "home-b"))
    with (WorkerProcess(worker_settings, tmp_path / "a.log", WORKER) as a,
          WorkerProcess(other, tmp_path / "b.log", WORKER) as b):
        a.metrics()
        b.metrics()
        replay_2011_and_wait(bars, worker_settings, expected, a, others=[b])
        consumed = [metric(w.metrics(), "forecaster_bars_consumed_total") or 0.0 for w in (a, b)]
        assert all(c > 0 for c in consumed), f"both workers take part: {consumed}"
        b.stop(signal.SIGKILL)
        replay(only_days(bars, lambda day: day.year == 2012), worker_settings, progress=False)
        records = wait_for_records(worker_settings, set(expected), a, others=[b])
    duplicated = assert_same_as_backtest(records, expected)
    figures("two workers, one killed", len(bars.bars), records, expected, repeated_records=duplicated,
            bars_consumed_before_the_kill=consumed)


@pytest.mark.parametrize(("handled_first", "before_the_end"), [(True, 100), (True, 0), (False, 0)],
                         ids=["mid-partition", "at-the-end", "never-handled"])
def test_offsets_committed_past_unhandled_bars_are_sought_back(bars: ReadResult, worker_settings: Settings,
                                                               tmp_path: Path, handled_first: bool,
                                                               before_the_end: int) -> None:
    """What a Faust race on rebalances did (docs/reliability.md): the group's committed offsets moved
    past bars the worker never handled. The worker's own positions make it seek back to them: when
    a message beyond its position comes, or, committed at the end, when none comes; a partition it
    never handled, back to its first offset."""
    expected = expected_records(bars, worker_settings)
    if handled_first:
        with WorkerProcess(worker_settings, tmp_path / "first.log", WORKER) as worker:
            replay_2011_and_wait(bars, worker_settings, expected, worker)
            assert worker.stop(signal.SIGTERM) == 0
    unhandled = only_days(bars, lambda day: day.year == 2012 or not handled_first)
    replay(unhandled, worker_settings, progress=False)
    # No worker runs: commit, for its group, an offset short of the end (or the end) in every partition.
    ends = {}
    for partition, offset, *_ in read_topic(worker_settings, worker_settings.topic_bars):
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    skipped = {partition: end - before_the_end for partition, end in ends.items()}
    consumer = KafkaConsumer(**kafka_python_options(worker_settings), group_id=worker_settings.app_id,
                             enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(worker_settings.topic_bars, p): OffsetAndMetadata(o, "", -1)
                         for p, o in skipped.items()})
    finally:
        consumer.close()
    with WorkerProcess(worker_settings, tmp_path / "second.log", WORKER) as worker:
        records = wait_for_records(worker_settings, set(expected), worker)
        metrics = worker.metrics()
    assert assert_same_as_backtest(records, expected) == 0
    assert (metric(metrics, "forecaster_offset_rewinds_total") or 0.0) >= 1
    figures("offsets committed past unhandled bars", len(bars.bars), records, expected,
            bars_committed_unhandled=len(unhandled.bars) - before_the_end * len(skipped))


