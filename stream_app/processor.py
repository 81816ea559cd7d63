"""One batch of ``bars`` messages in, predictions, scores, dead letters and new states out.

This is the worker's logic without Kafka: the Faust agent (:mod:`stream_app.app`) hands it the raw
messages of one partition and the current states of their tickers, sends what it returns, then
writes the states. Keeping it free of Faust lets the tests check it record for record against
``forecaster backtest``, and keeps the hot path in plain Python/numpy.

Rules applied here:

* a message that is not a valid bar (not JSON, wrong schema, NaN, negative price, ...) becomes a
  dead letter with its reason; the batch goes on;
* per ticker, bars are applied in arrival order, which the producer makes date order; a bar dated
  on or before the last applied bar of its ticker (a re-replay, a retry, a redelivery after a
  crash) is not applied: it is dead-lettered as ``duplicate`` (same date) or ``out_of_order``
  (earlier date) and the state is untouched;
* the bars of a batch are stepped in rounds (the k-th bar of every ticker together) so the core's
  batched form and the model are called once per round instead of once per bar;
* a bar on which the step itself raises (a bug of the core that its numbers meet) is dead-lettered as
  ``step_failed`` with the error, and the other bars go on (:func:`models.core.step.step_guarded`):
  the same bar would otherwise stop the worker at every restart.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from models.core.bar import Bar, BarError
from models.core.config import CoreConfig
from models.core.deadletter import DeadLetter
from models.core.model_slot import PointModel
from models.core.state import TickerState
from models.core.step import StepFailure, StepResult, step_guarded

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InMessage:
    """A consumed message: what the processor needs of it."""

    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp: float | None = None  # Kafka record timestamp, seconds since the epoch


@dataclass
class BatchOutput:
    """What one batch produces, in the order it must be sent."""

    results: list[tuple[Bar, StepResult]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    states: dict[str, TickerState] = field(default_factory=dict)  # new state per ticker touched


def decode_bar(message: InMessage) -> Bar:
    """The bar in a message, or :class:`BarError` with the reason it is poison."""
    try:
        record = orjson.loads(message.value) if message.value is not None else None
    except orjson.JSONDecodeError as exc:
        raise BarError("not_json", f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise BarError("not_json", f"expected a JSON object, got {type(record).__name__}")
    bar = Bar.from_dict(record)
    if message.key != bar.ticker.encode():
        # The key decides the partition, and so the worker and the state a bar meets: a bar under
        # another key, or none, would be applied to a state its ticker's other bars never see. Bytes,
        # not decoded text: a key that is not UTF-8 decodes (with replacement) to "\ufffd", a ticker
        # it is not, whose state the worker would look for under a key no event of the batch has.
        raise BarError("bad_ticker", f"key {message.key!r} is not the ticker {bar.ticker!r}")
    return bar


def _raw_text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", errors="replace")


class BatchProcessor:
    """Applies :func:`models.core.step.step_many` to batches of raw messages.

    Parameters
    ----------
    config
        The core's configuration.
    model
        The champion, or None for the core's own ``config.model``.
    topic
        Name of the source topic, for the dead letters' ``source``.
    clock
        Returns the wall-clock time as an ISO string, for dead letters; injectable for tests.
    """

    def __init__(
        self,
        config: CoreConfig,
        model: PointModel | None = None,
        topic: str = "bars",
        clock: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.topic = topic
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"))

    def process(
        self, messages: Sequence[InMessage], states: Mapping[str, TickerState | None]
    ) -> BatchOutput:
        """Process one batch; ``states`` holds the current state of every ticker in it (or None)."""
        out = BatchOutput()
        queues: dict[str, list[Bar]] = {}
        queued: dict[str, list[InMessage]] = {}  # each queued bar's message, for a failed step's dead letter
        last_date: dict[str, dt.date | None] = {}
        for message in messages:
            source = f"{self.topic}/{message.partition}/{message.offset}"
            try:
                bar = decode_bar(message)
            except BarError as exc:
                out.dead_letters.append(self._dead(exc.reason, exc.detail, message, source))
                continue
            if bar.ticker not in last_date:
                state = states.get(bar.ticker)
                last_date[bar.ticker] = state.last_date if state is not None else None
            previous = last_date[bar.ticker]
            if previous is not None and bar.date <= previous:
                reason = "duplicate" if bar.date == previous else "out_of_order"
                detail = (f"{bar.ticker} {bar.date.isoformat()} is on or before the last applied bar "
                          f"{previous.isoformat()}; not applied again")
                out.dead_letters.append(self._dead(reason, detail, message, source))
                continue
            last_date[bar.ticker] = bar.date
            queues.setdefault(bar.ticker, []).append(bar)
            queued.setdefault(bar.ticker, []).append(message)
        out.results, out.states, failures = step_rounds(queues, states, self.config, self.model)
        for failure in failures:
            ticker = failure.bar.ticker
            message = queued[ticker][next(k for k, bar in enumerate(queues[ticker]) if bar is failure.bar)]
            out.dead_letters.append(self._dead(failure.reason, failure.detail, message,
                                               f"{self.topic}/{message.partition}/{message.offset}"))
        if failures:  # once a batch: a bug that every bar meets must not write a traceback per bar
            log.error("the forecasting step failed on %d bar(s) of the batch, dead-lettered as step_failed; "
                      "the first: %s", len(failures), failures[0].detail, exc_info=failures[0].error)
        return out

    def _dead(self, reason: str, detail: str, message: InMessage, source: str) -> DeadLetter:
        return DeadLetter(reason=reason, detail=detail, raw=_raw_text(message.value), source=source,
                          at=self.clock())


def step_rounds(queues: Mapping[str, Sequence[Bar]], states: Mapping[str, TickerState | None],
                config: CoreConfig, model: PointModel | None
                ) -> tuple[list[tuple[Bar, StepResult]], dict[str, TickerState], list[StepFailure]]:
    """Each ticker's bars (``queues``, in date order) applied to its state, in rounds: the results in
    round order (each ticker's in date order), each touched ticker's new state, and the bars the step
    raised on (:func:`~models.core.step.step_guarded`; their tickers' next bars go on from the state
    before them)."""
    results: list[tuple[Bar, StepResult]] = []
    failures: list[StepFailure] = []
    current: dict[str, TickerState | None] = {t: states.get(t) for t in queues}
    depth = max((len(q) for q in queues.values()), default=0)
    for k in range(depth):
        tickers = [t for t, q in queues.items() if len(q) > k]
        bars = [queues[t][k] for t in tickers]
        for ticker, bar, result in zip(tickers, bars, step_guarded([current[t] for t in tickers], bars,
                                                                   config, model), strict=True):
            if isinstance(result, StepFailure):
                failures.append(result)
                continue
            current[ticker] = result.state
            results.append((bar, result))
    return results, {t: s for t, s in current.items() if s is not None}, failures


def prediction_records(output: BatchOutput) -> list[tuple[str, dict]]:
    """``(ticker, record)`` of every score and prediction of a batch, each ticker's in date order.

    A bar's scores (of the predictions it settles) go out before the bar's own predictions, each in
    ascending horizon. The records are the core's own (those of ``forecaster backtest``), not copies:
    the worker's fields (``produced_at``) join them as they are encoded
    (:func:`stream_app.batch.record_encoder`).
    """
    records: list[tuple[str, dict]] = []
    for bar, result in output.results:
        ticker = bar.ticker
        for score in result.scores:  # plain loops: a third of the cost of extending by generators
            records.append((ticker, score))
        for prediction in result.predictions:
            records.append((ticker, prediction))
    return records
