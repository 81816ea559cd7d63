"""Producer processes of an unpaced replay: balanced shares of whole tickers, and honest outcomes."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal

import pytest

from forecaster.kafka.broker import free_port
from forecaster.settings import Settings
from models.core.bar import Bar
from producers.fanout import send_shares, split_by_ticker
from tests.kafka_helpers import read_topic


def _bars(tickers: list[str], days: int) -> list[Bar]:
    start = dt.date(2024, 1, 1)
    return [Bar(t, start + dt.timedelta(days=d), 10.0, 11.0, 9.0, 10.5, 100.0)
            for d in range(days) for t in tickers]


def test_each_ticker_goes_whole_to_one_process_in_order() -> None:
    tickers = [f"T{i}" for i in range(40)]
    bars = _bars(tickers, days=5)
    groups = split_by_ticker(bars, processes=3)
    assert sum(len(g) for g in groups) == len(bars)
    owners = [{b.ticker for b in group} for group in groups]
    assert set.union(*owners) == set(tickers) and sum(len(o) for o in owners) == len(tickers)
    for group in groups:
        assert [b.date for b in group] == sorted(b.date for b in group)  # the read's order is kept


def test_shares_are_balanced_by_bars_not_by_tickers() -> None:
    # One long history and many short ones: the long one gets a process of its own.
    bars = _bars(["BIG"], days=300) + _bars([f"S{i}" for i in range(30)], days=10)
    groups = split_by_ticker(bars, processes=2)
    assert sorted(len(g) for g in groups) == [300, 300]
    assert [{b.ticker for b in g} == {"BIG"} for g in groups].count(True) == 1


def test_the_split_is_the_same_for_the_same_bars() -> None:
    bars = _bars([f"T{i}" for i in range(17)], days=3)
    assert split_by_ticker(bars, processes=4) == split_by_ticker(list(bars), processes=4)


def test_split_refuses_no_processes() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_by_ticker([], processes=0)


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
    groups = split_by_ticker(bars, processes=2)

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
