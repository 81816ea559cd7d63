"""Producer processes of an unpaced replay: shares by partition, outcomes that say what happened."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal

import pytest

from forecaster.kafka.broker import free_port
from forecaster.settings import Settings
from models.core.bar import Bar
from producers.fanout import partition_of, send_shares, split_by_partition
from tests.kafka_helpers import read_topic


def _bars(tickers: list[str], days: int) -> list[Bar]:
    start = dt.date(2024, 1, 1)
    return [Bar(t, start + dt.timedelta(days=d), 10.0, 11.0, 9.0, 10.5, 100.0)
            for d in range(days) for t in tickers]


def test_each_ticker_goes_whole_to_the_process_of_its_partition_in_order() -> None:
    tickers = [f"T{i}" for i in range(40)]
    bars = _bars(tickers, days=5)
    groups = split_by_partition(bars, partitions=8, processes=3)
    assert sum(len(g) for g in groups) == len(bars)
    for index, group in enumerate(groups):
        assert all(partition_of(b.ticker.encode(), 8) % 3 == index for b in group)
        assert [b.date for b in group] == sorted(b.date for b in group)  # the read's order is kept
    assert all(groups)  # 40 tickers over 8 partitions reach every process


def test_split_refuses_no_processes() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_by_partition([], partitions=4, processes=0)


def test_a_process_that_cannot_reach_the_broker_says_so_and_delivers_nothing() -> None:
    settings = Settings(bootstrap=f"127.0.0.1:{free_port()}")
    seen: list[int] = []
    outcomes = send_shares([_bars(["A"], 3), _bars(["B"], 2)], settings, "bars", connect_timeout_s=0.5,
                           on_progress=seen.append)
    assert [o.delivered for o in outcomes] == [0, 0]
    assert all(o.problem is not None and o.problem.startswith("BrokerUnreachable: cannot reach Kafka")
               for o in outcomes), outcomes
    assert seen and seen[-1] == 0


@pytest.mark.kafka
def test_an_interrupt_stops_every_process_with_an_exact_account(kafka_settings: Settings) -> None:
    bars = _bars([f"T{i}" for i in range(100)], days=3000)  # 300,000 bars: seconds of work
    groups = split_by_partition(bars, partitions=kafka_settings.partitions, processes=2)

    pressed: list[int] = []

    def ctrl_c_once_under_way(sent: int) -> None:
        # Ctrl-C in a terminal reaches the whole process group: each producer process gets it, and
        # then again from the parent, whose wait is where its own KeyboardInterrupt lands.
        if sent >= 5_000 and not pressed:
            pressed.append(sent)
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGINT)
            raise KeyboardInterrupt

    outcomes = send_shares(groups, kafka_settings, kafka_settings.topic_bars,
                           on_progress=ctrl_c_once_under_way)
    assert [o.problem for o in outcomes] == ["interrupted", "interrupted"]
    delivered = sum(o.delivered for o in outcomes)
    assert 0 < delivered < len(bars)
    assert len(read_topic(kafka_settings, kafka_settings.topic_bars)) == delivered
