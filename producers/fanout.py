"""Unpaced replays through several producer processes, each publishing the bars of its tickers.

kafka-python spends about 25 µs of CPU per record in Python (docs/benchmarks.md), so one process
tops out near 40,000 bars/s whatever its settings. The tickers are shared out whole: every ticker
is published by one process, in date order, so each ticker's bars keep their order in their
partition, which is the order Kafka and the worker keep. Shares are balanced by bar count, not by
partition: the slowest process sets the replay's time, and with partitions as the unit the largest
of 8 shares of the S&P 500 file was 15 % above the mean; with tickers it is within one ticker's
bars of it. The processes go through the dates side by side; several of them may write to one
partition, so a partition interleaves their tickers, as a consumer of several partitions sees anyway.

The processes are forked after the caller's own producer is closed, so no producer thread or lock
is copied into them, and they inherit their share of the bars instead of receiving it pickled.
Each counts the records the broker acknowledged in shared memory, from its delivery callback, so
the count survives a process that dies; what a process cannot deliver it reports as its problem.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from forecaster.settings import Settings
from models.core.bar import Bar
from producers.publisher import Publisher, error_text

#: Sent bars are published to the parent's progress counter every this many sends.
PROGRESS_EVERY = 1024
POLL_S = 0.1


def split_by_ticker(bars: Sequence[Bar], processes: int) -> list[list[Bar]]:
    """The bars of each process, in their order, each ticker whole in one share, shares balanced.

    Tickers go, largest first, to the share with the fewest bars so far (ties to the lower index,
    then the ticker's name), so the split is the same for the same bars. There are never more
    shares than tickers (one share when there are none).

    >>> import datetime as dt
    >>> days = [dt.date(2024, 1, d) for d in range(2, 6)]
    >>> bars = [Bar(t, day, 1.0, 1.0, 1.0, 1.0, 0.0) for day in days for t in ("AAPL", "MSFT", "IBM")]
    >>> bars += [Bar("GOOG", day, 1.0, 1.0, 1.0, 1.0, 0.0) for day in days[:2]]
    >>> [sorted({b.ticker for b in share}) for share in split_by_ticker(bars, processes=2)]
    [['AAPL', 'MSFT'], ['GOOG', 'IBM']]
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    counts = Counter(bar.ticker for bar in bars)
    shares = max(1, min(processes, len(counts)))
    loads = [(0, index) for index in range(shares)]
    index_of: dict[str, int] = {}
    for ticker, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        load, index = heapq.heappop(loads)
        index_of[ticker] = index
        heapq.heappush(loads, (load + count, index))
    out: list[list[Bar]] = [[] for _ in range(shares)]
    for bar in bars:
        out[index_of[bar.ticker]].append(bar)
    return out


@dataclass(frozen=True)
class ShareOutcome:
    """What one process did: records acknowledged, and what stopped it, if anything."""

    delivered: int
    problem: str | None = None  # e.g. "KafkaTimeoutError: ...", "interrupted", "exited with -9"
    first_error: str | None = None  # of the records the broker refused


def send_shares(groups: Sequence[Sequence[Bar]], settings: Settings, topic: str, *,
                connect_timeout_s: float = 10.0,
                on_progress: Callable[[int], None] | None = None) -> list[ShareOutcome]:
    """Publish each group of bars from a process of its own; one outcome per group, in order.

    ``on_progress`` receives the number of bars sent so far, several times a second. An interrupt
    (Ctrl-C) stops every process, which reports what the broker had acknowledged.
    """
    context = multiprocessing.get_context("fork")
    sent = [context.Value("q", 0, lock=False) for _ in groups]
    delivered = [context.Value("q", 0, lock=False) for _ in groups]
    pipes, processes = [], []
    for group, sent_count, delivered_count in zip(groups, sent, delivered, strict=True):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_send_share, daemon=True,
                                  args=(group, settings, topic, connect_timeout_s, sender, sent_count,
                                        delivered_count))
        process.start()
        sender.close()
        pipes.append(receiver)
        processes.append(process)
    try:
        running = {process.sentinel for process in processes}
        while running:
            if on_progress is not None:
                on_progress(sum(count.value for count in sent))
            # Wakes as soon as a process ends, so the replay's time is the slowest process's own.
            running.difference_update(wait(list(running), timeout=POLL_S))
    except KeyboardInterrupt:
        for process in processes:  # they may not have had the terminal's Ctrl-C
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        for process in processes:
            process.join()
    if on_progress is not None:
        on_progress(sum(count.value for count in sent))
    outcomes = []
    for process, pipe, delivered_count in zip(processes, pipes, delivered, strict=True):
        process.join()
        try:
            reported = pipe.recv() if pipe.poll() else None
        except (EOFError, OSError):  # it ended without a word: its shared count still stands
            reported = None
        if isinstance(reported, ShareOutcome):
            outcomes.append(reported)
        else:
            outcomes.append(ShareOutcome(delivered_count.value,
                                         problem=f"a producer process exited with {process.exitcode}"))
    return outcomes


def _send_share(bars: Sequence[Bar], settings: Settings, topic: str, connect_timeout_s: float,
                result: Connection, sent: Any, delivered: Any) -> None:
    # In the child process: everything that can go wrong ends as the outcome sent back.
    problem: str | None = None
    publisher: Publisher | None = None
    interrupted: list[int] = []
    # Ctrl-C reaches a child from the terminal and again from the parent: a flag, not an exception,
    # so that the second one cannot cut the flush short and leave the parent without an account.
    signal.signal(signal.SIGINT, lambda signum, _frame: interrupted.append(signum))

    def acknowledged(value: Any) -> None:
        if not isinstance(value, BaseException):
            delivered.value += 1

    try:
        publisher = Publisher(settings, connect_timeout_s=connect_timeout_s)
        for index, bar in enumerate(bars):
            if interrupted:
                problem = "interrupted"
                break
            publisher.send_bar(topic, bar).add_both(acknowledged)
            if index % PROGRESS_EVERY == 0:
                sent.value = index
        else:
            sent.value = len(bars)
        publisher.flush()
    except Exception as exc:
        problem = error_text(exc)
    finally:
        if publisher is not None:
            publisher.close()
    deliveries = publisher.deliveries.get(topic) if publisher is not None else None
    result.send(ShareOutcome(delivered.value, problem, deliveries.first_error if deliveries else None))
    result.close()
