"""Producer processes of an unpaced replay: shares by partition, outcomes that say what happened."""

from __future__ import annotations

import datetime as dt

import pytest

from forecaster.kafka.broker import free_port
from forecaster.settings import Settings
from models.core.bar import Bar
from producers.fanout import partition_of, send_shares, split_by_partition


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
