"""Publishing a read: bars to the bars topic in event-time order, rejected rows to the dead letters.

Bars go out sorted by (date, ticker), as a live feed would deliver them, keyed by ticker so one
ticker's bars share a partition and keep their order. A long unpaced replay is published by
several producer processes (:mod:`producers.fanout`), each going through the dates for its share
of the tickers. Values are the JSON of ``schemas/bar.schema.json`` (orjson writes a
:class:`~models.core.bar.Bar` exactly as ``Bar.to_dict`` reads). Dead letters go first, keyed by
ticker when it is known.

Every row is accounted for: ``rows_read == bars_sent + dead letters + filtered`` in the summary of
a successful replay; any record the broker does not acknowledge ends the replay with a
:class:`ReplayError` that says how much was delivered.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from forecaster.kafka.topics import TopicSpec, app_topics, create_topics
from forecaster.settings import Settings
from producers.fanout import ShareOutcome, send_shares, split_by_ticker
from producers.pacing import UNPACED, Pacer, Pacing
from producers.progress import Progress
from producers.publisher import Publisher, error_text
from producers.readers import ReadResult

PACED_LINGER_MS = 0
#: An unpaced replay this long is worth the start of several producer processes (automatic mode).
FAN_OUT_MIN_BARS = 50_000


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay did, for people (:meth:`lines`) and for callers."""

    rows_read: int
    filtered: int
    bars_sent: int
    dead_letters: dict[str, int] = field(default_factory=dict)  # delivered, by reason
    seconds: float = 0.0
    topic: str = ""
    dlq_topic: str = ""
    pacing: str = "max"

    @property
    def dead_letters_sent(self) -> int:
        return sum(self.dead_letters.values())

    @property
    def bars_per_s(self) -> float:
        return self.bars_sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def accounted(self) -> bool:
        """Whether every row read is a sent bar, a sent dead letter or a filtered row."""
        return self.rows_read == self.bars_sent + self.dead_letters_sent + self.filtered

    def lines(self) -> list[str]:
        """The closing summary.

        >>> print("\\n".join(ReplaySummary(10, 1, 7, {"duplicate": 2}, 0.5, "bars", "bars.dlq").lines()))
        rows read        10
        filtered          1
        bars sent         7  -> bars
        rejected          2  -> bars.dlq
          duplicate       2
        seconds        0.50  (pacing: max)
        bars/s           14
        """
        pad = max([12, *(len(reason) + 3 for reason in self.dead_letters)])
        lines = [
            f"{'rows read':<{pad}}{self.rows_read:>7,}",
            f"{'filtered':<{pad}}{self.filtered:>7,}",
            f"{'bars sent':<{pad}}{self.bars_sent:>7,}  -> {self.topic}",
            f"{'rejected':<{pad}}{self.dead_letters_sent:>7,}  -> {self.dlq_topic}",
        ]
        lines += [f"  {reason:<{pad - 2}}{count:>7,}" for reason, count in self.dead_letters.items()]
        lines += [f"{'seconds':<{pad}}{self.seconds:>7.2f}  (pacing: {self.pacing})",
                  f"{'bars/s':<{pad}}{self.bars_per_s:>7,.0f}"]
        return lines


class ReplayError(RuntimeError):
    """A replay that did not deliver everything; :attr:`summary` says what was delivered."""

    def __init__(self, message: str, summary: ReplaySummary) -> None:
        super().__init__(f"{message}; delivered {summary.bars_sent:,} bars and "
                         f"{summary.dead_letters_sent:,} dead letters of {summary.rows_read:,} rows read")
        self.summary = summary


def _topics(settings: Settings, topic: str) -> list[TopicSpec]:
    # The bars topic gets the application's partition count, not the broker's auto-create default.
    specs = {spec.name: spec for spec in app_topics(settings.replace(topic_bars=topic))}
    return [specs[topic], specs[settings.topic_dlq]]


def replay(result: ReadResult, settings: Settings, *, topic: str | None = None, pacing: Pacing = UNPACED,
           progress: bool | None = None, connect_timeout_s: float = 10.0, processes: int | None = None,
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> ReplaySummary:
    """Publish ``result``: dead letters to ``settings.topic_dlq``, then the bars, paced.

    Parameters
    ----------
    result
        What :func:`producers.readers.read_csv_bars` read.
    settings
        Broker, security and topic settings.
    topic
        Topic of the bars (default ``settings.topic_bars``). Missing topics are created with the
        application's partition count.
    pacing
        :class:`~producers.pacing.Pacing`; the default sends as fast as the broker takes them.
    progress
        Draw a progress bar on stderr; ``None``: when stderr is a terminal.
    connect_timeout_s
        Longest wait for the broker before giving up with nothing sent.
    processes
        Producer processes of an unpaced replay (:mod:`producers.fanout`); default
        ``settings.replay_processes``, whose 0 means one per CPU for replays of at least
        :data:`FAN_OUT_MIN_BARS` bars, else one; never more than there are tickers. Paced replays
        use one.
    clock, sleep
        Time source and wait used for pacing, progress and the duration (injectable for tests).

    Raises
    ------
    producers.publisher.BrokerUnreachable
        The broker did not answer within ``connect_timeout_s``; nothing was sent.
    ReplayError
        Some records were not acknowledged, or the replay was interrupted; the summary says what was.
    """
    unaccounted = result.rows_read - len(result.bars) - len(result.dead_letters) - result.filtered
    if unaccounted:
        raise ValueError(f"the read does not account for {unaccounted} of its {result.rows_read} rows")
    topic = topic or settings.topic_bars
    if topic == settings.topic_dlq:
        raise ValueError(f"the bars topic and the dead-letter topic are both {topic!r}; they must differ")
    show = sys.stderr.isatty() if progress is None else progress
    wanted = 1 if not pacing.unpaced else _processes(processes, settings, len(result.bars))
    # A paced replay is a feed: each bar leaves when it is due, not up to 20 ms later with others.
    publisher = Publisher(settings, connect_timeout_s=connect_timeout_s,
                          linger_ms=None if pacing.unpaced else PACED_LINGER_MS)
    letter_futures: list[tuple[str, Any]] = []
    outcomes: list[ShareOutcome] | None = None  # of the producer processes, when there are several
    problem: str | None
    cause: BaseException | None
    started = clock()
    try:
        create_topics(settings, _topics(settings, topic))
        for letter in result.dead_letters:
            key = letter.ticker.encode() if letter.ticker else None
            letter_futures.append((letter.reason,
                                   publisher.send(settings.topic_dlq, key, orjson.dumps(letter.to_dict()))))
        bar_progress = Progress(len(result.bars), clock=clock) if show else None
        shares = split_by_ticker(result.bars, wanted) if wanted > 1 else [result.bars]
        if len(shares) > 1:
            # The dead letters are out and this producer's thread is gone before the fork.
            publisher.flush()
            publisher.close()
            outcomes = send_shares(shares, settings, topic,
                                 connect_timeout_s=connect_timeout_s,
                                 on_progress=bar_progress.update if bar_progress else None)
            if bar_progress is not None:
                bar_progress.close()
        else:
            _send_bars(publisher, result, topic, Pacer(pacing, clock=clock, sleep=sleep), bar_progress)
            publisher.flush()
        problem, cause = None, None
    except KeyboardInterrupt as exc:
        problem, cause = "interrupted", exc
    except Exception as exc:  # whatever stopped the sending, say what was delivered before it
        problem, cause = f"replay stopped by {error_text(exc)}", exc
    finally:
        publisher.close()
    errors = [d.first_error for d in publisher.deliveries.values() if d.first_error]
    if outcomes is None:
        bars = publisher.deliveries.get(topic)
        bars_sent = bars.delivered if bars else 0
    else:
        bars_sent = sum(share.delivered for share in outcomes)
        errors += [share.first_error for share in outcomes if share.first_error]
        stopped = [share.problem for share in outcomes if share.problem]
        if problem is None and stopped:
            problem = "interrupted" if "interrupted" in stopped else f"replay stopped by {stopped[0]}"
    delivered_letters: dict[str, int] = {}
    for reason, future in letter_futures:
        if future.succeeded():
            delivered_letters[reason] = delivered_letters.get(reason, 0) + 1
    summary = ReplaySummary(
        rows_read=result.rows_read, filtered=result.filtered, bars_sent=bars_sent,
        dead_letters=dict(sorted(delivered_letters.items(), key=lambda item: (-item[1], item[0]))),
        seconds=clock() - started, topic=topic, dlq_topic=settings.topic_dlq, pacing=pacing.describe(),
    )
    if problem is None and not summary.accounted:
        problem = "the broker did not acknowledge every record"
    if problem is not None:
        message = problem + (f" (first delivery error: {errors[0]})" if errors else "")
        raise ReplayError(message, summary) from cause
    return summary


def _processes(requested: int | None, settings: Settings, bars: int) -> int:
    count = settings.replay_processes if requested is None else requested
    if count < 0:
        raise ValueError(f"processes must be 0 (automatic) or more, got {count}")
    if count == 0:
        count = (os.cpu_count() or 1) if bars >= FAN_OUT_MIN_BARS else 1
    return count


def _send_bars(publisher: Publisher, result: ReadResult, topic: str, pacer: Pacer,
               progress: Progress | None) -> None:
    day, day_index = None, -1
    paced = not pacer.pacing.unpaced
    for index, bar in enumerate(result.bars):
        if paced:
            if bar.date != day:
                day, day_index = bar.date, day_index + 1
            pacer.wait(index, day_index)
        publisher.send_bar(topic, bar)
        if progress is not None:
            progress.update(index + 1)
    if progress is not None:
        progress.close()

