"""Unpaced replays through several producer processes, each owning a share of the partitions.

kafka-python spends about 23 µs of CPU per record in Python (docs/benchmarks.md), so one process
tops out near 40,000 bars/s whatever its settings. Each process here takes the bars of the
partitions ``p`` with ``p % processes == index``: every ticker is published by one process, in date
order, so what Kafka orders (a partition) stays ordered; the processes go through the dates side
by side.

The processes are forked after the caller's own producer is closed, so no producer thread or lock
is copied into them, and they inherit their share of the bars instead of receiving it pickled.
Each counts the records the broker acknowledged in shared memory, from its delivery callback, so
the count survives a process that dies; what a process cannot deliver it reports as its problem.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from kafka.partitioner.default import murmur2

from forecaster.settings import Settings
from models.core.bar import Bar
from producers.publisher import Publisher, error_text

#: Sent bars are published to the parent's progress counter every this many sends.
PROGRESS_EVERY = 1024
POLL_S = 0.1


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a key under the default partitioner of Kafka's clients (murmur2).

    >>> partition_of(b"AAPL", 8), partition_of(b"IBM", 8)
    (1, 3)
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def split_by_partition(bars: Sequence[Bar], partitions: int, processes: int) -> list[list[Bar]]:
    """The bars of each process, in their order: process ``i`` takes partitions ``p % processes == i``.

    >>> import datetime as dt
    >>> day = dt.date(2024, 1, 2)
    >>> bars = [Bar(t, day, 1.0, 1.0, 1.0, 1.0, 0.0) for t in ("AAPL", "MSFT", "IBM", "GOOG")]
    >>> [[b.ticker for b in share] for share in split_by_partition(bars, partitions=4, processes=2)]
    [['MSFT'], ['AAPL', 'IBM', 'GOOG']]
    """
    if processes < 1 or partitions < 1:
        raise ValueError(f"processes and partitions must be at least 1, got {processes} and {partitions}")
    out: list[list[Bar]] = [[] for _ in range(processes)]
    index_of: dict[str, int] = {}
    for bar in bars:
        index = index_of.get(bar.ticker)
        if index is None:
            index = index_of[bar.ticker] = partition_of(bar.ticker.encode(), partitions) % processes
        out[index].append(bar)
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
        while any(p.is_alive() for p in processes):
            if on_progress is not None:
                on_progress(sum(count.value for count in sent))
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        for process in processes:  # they may not have had the terminal's Ctrl-C
            if process.is_alive():
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
