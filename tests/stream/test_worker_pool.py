"""``forecaster worker --processes N`` against the real broker: one group, one metrics endpoint, the
backtest's records; a dead process restarted; every process stopped with the pool, however it ends."""

from __future__ import annotations

import os
import signal
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from forecaster.settings import Settings
from producers.readers import ReadResult
from producers.replay import replay
from tests.worker import (
    FORECASTER_WORKER,
    WorkerProcess,
    assert_same_as_backtest,
    bokeh_slice,
    expected_records,
    wait_for_records,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

POOL = [*FORECASTER_WORKER, "--processes", "2", "-l", "info"]


@pytest.fixture
def bars(data_dir: Path) -> ReadResult:
    return bokeh_slice(data_dir, ("AAPL", "GOOG", "IBM", "MSFT"))


def by_process(page: str, sample_name: str) -> dict[str, float]:
    """``{process: value}`` of one sample of the pooled page (summed over its other labels)."""
    values: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == sample_name:
                values[sample.labels["process"]] += sample.value
    return dict(values)


def children_of(pid: int) -> set[int]:
    """The live processes started by ``pid``'s main thread, where the pool starts its own (Linux)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in children if alive(int(child))}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def both_up(pool: WorkerProcess) -> bool:
    return by_process(pool.metrics(), "forecaster_worker_process_up") == {"0": 1.0, "1": 1.0}


def test_a_pool_streams_the_backtests_records_behind_one_metrics_endpoint(
        bars: ReadResult, worker_settings: Settings, tmp_path: Path) -> None:
    expected = expected_records(bars, worker_settings)
    with WorkerProcess(worker_settings, tmp_path / "pool.log", POOL) as pool:
        wait_until(lambda: both_up(pool), "both worker processes up", pool)
        replay(bars, worker_settings, progress=False)
        records = wait_for_records(worker_settings, set(expected), pool)
        page = pool.metrics()
        assert pool.stop(signal.SIGTERM) == 0
    assert_same_as_backtest(records, expected)  # repeats, if a rebalance made any, are identical
    consumed = by_process(page, "forecaster_bars_consumed_total")
    assert sorted(consumed) == ["0", "1"] and all(n > 0 for n in consumed.values()), consumed
    assert sum(consumed.values()) >= len(bars.bars)
    # Each process kept its local state in a directory of its own.
    assert {p.name for p in (Path(worker_settings.home) / "worker").iterdir()} == {"process-0", "process-1"}


def test_a_dead_process_is_restarted_and_sigterm_stops_them_all(worker_settings: Settings,
                                                                 tmp_path: Path) -> None:
    with WorkerProcess(worker_settings, tmp_path / "pool.log", POOL) as pool:
        assert pool.process is not None
        wait_until(lambda: both_up(pool), "both worker processes up", pool)
        first = children_of(pool.process.pid)
        assert len(first) == 2
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        restarts = "forecaster_worker_process_restarts_total"
        wait_until(lambda: sum(by_process(pool.metrics(), restarts).values()) == 1 and both_up(pool),
                   "the killed process restarted", pool)
        second = children_of(pool.process.pid)
        assert len(second) == 2 and victim not in second
        assert pool.stop(signal.SIGTERM) == 0
    assert not any(alive(pid) for pid in second)


def test_the_processes_stop_when_the_pool_is_killed(worker_settings: Settings, tmp_path: Path) -> None:
    with WorkerProcess(worker_settings, tmp_path / "pool.log", POOL) as pool:
        assert pool.process is not None
        wait_until(lambda: both_up(pool), "both worker processes up", pool)
        children = children_of(pool.process.pid)
        pool.stop(signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in children), "the pool's processes gone", None,
               timeout_s=60)
