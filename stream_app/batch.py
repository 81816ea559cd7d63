"""One batch of the agent's events: admitted, processed, sent, then written (in that order).

:class:`BatchHandler` runs steps 2 to 5 of the flow that :mod:`stream_app.app` narrates: the
position keeper admits the batch, the processor computes its outputs, the sender delivers them, and
only then are the states and positions written, each under an event of its own partition.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from forecaster.settings import Settings
from models.core.deadletter import DeadLetter
from models.core.state import TickerState
from models.core.step import ModelError
from stream_app.faust_adapter import Event, TableAccess, in_messages
from stream_app.monitor import ForecastMonitor
from stream_app.position_keeper import PositionKeeper
from stream_app.processor import BatchOutput, BatchProcessor, InMessage, prediction_records
from stream_app.shadow import Shadow, ShadowOutput
from stream_app.state_codec import ticker_states


class Sender(Protocol):
    """What the handler needs of the sender (:class:`stream_app.sender.BatchSender`)."""

    async def send(self, records: Iterable[tuple[str, bytes | None, bytes]]) -> None: ...

    async def send_placed(self, records: Iterable[tuple[str, int, bytes | None, bytes]]
                          ) -> dict[tuple[str, int], int]: ...


class Fallback(Protocol):
    """What serves the batches when the champion's model raises on one
    (:class:`stream_app.model_holder.ModelHolder`)."""

    def core_processor(self) -> BatchProcessor: ...

    def demote(self, processor: BatchProcessor, error: Exception) -> None: ...


class BatchHandler:
    """Handles the agent's batches: admit, process, send, write.

    Parameters
    ----------
    settings
        The worker's settings (its topics).
    states
        The table of ticker states: the ticker's bytes -> the state's bytes.
    keeper
        The positions of the source partitions.
    monitor
        Where each batch's results are observed.
    shadow
        The challengers run beside the champion (None: none).
    fallback
        Serves the core's own model from the batch on which the champion's raises (None: the
        error stops the worker).
    """

    def __init__(self, settings: Settings, states: Any, keeper: PositionKeeper,
                 monitor: ForecastMonitor, shadow: Shadow | None = None, fallback: Fallback | None = None
                 ) -> None:
        self.settings = settings
        self.states = states
        self.keeper = keeper
        self.monitor = monitor
        self.shadow = shadow
        self.fallback = fallback
        self.codec = ticker_states()
        self.busy = False  # a batch is in hand (the stall watch holds still meanwhile)

    async def handle(self, events: Sequence[Event], tables: TableAccess, processor: BatchProcessor,
                     sender: Sender) -> None:
        """Handle one batch; returns once its outputs are delivered and its states written."""
        self.keeper.note_generation()
        self.busy = True
        started = time.perf_counter()
        messages = in_messages(events)
        # Each key read and written under its own last event: see stream_app.faust_adapter.
        last_event = {e.message.key: e for e in events}
        last_of_partition = {e.message.partition: e for e in events}
        admission = await self.keeper.admit(messages, tables, last_of_partition)
        states = {ticker: self.codec.decode(ticker, tables.get(self.states, key, event))
                  for key, event in last_event.items()
                  if key is not None and (ticker := _ticker(key)) is not None}
        output = self._process(processor, admission.admitted, states)
        output.dead_letters += self._quarantined_states(last_event) + self.keeper.take_quarantined()
        produced_at = {"produced_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")}
        champion = prediction_records(output)
        shadow = (self.shadow.run(output.results, states, champion, tables, last_event)
                  if self.shadow is not None else ShadowOutput())
        await sender.send(self._records(champion, output.dead_letters, shadow.records, produced_at))
        shadow_states = (self.shadow.placed_states(shadow.states, tables, last_event)
                         if self.shadow is not None else [])
        await self._write_states(output.states, shadow_states, tables, last_event, sender)
        self.keeper.write(admission, tables, last_of_partition)
        await self.keeper.follow_up(admission)
        self.monitor.observe_partitions({ticker: m.partition for m in admission.admitted
                                         if (ticker := _ticker(m.key)) is not None})
        self.monitor.observe_batch(output.results, time.perf_counter() - started)
        self.monitor.observe_dead_letters(letter.reason for letter in output.dead_letters)
        self.monitor.observe_delivery(m.timestamp for m in admission.admitted)
        # From a partition's first batch on, not only at the lag timer's next tick.
        for partition, lag in self.keeper.lags_after(admission):
            self.monitor.observe_consumer_lag(partition, lag)
        self.busy = False

    def _process(self, processor: BatchProcessor, messages: Sequence[InMessage],
                 states: Mapping[str, TickerState | None]) -> BatchOutput:
        """The processor's output, or the core's model's when the champion's model fails on the batch
        (:class:`~models.core.step.ModelError`): a model's own bug must not stop the stream (and again
        on the same batch at every restart). Any other error fails the batch."""
        try:
            return processor.process(messages, states)
        except ModelError as error:
            if self.fallback is None:
                raise
            core = self.fallback.core_processor()
            output = core.process(messages, states)
            self.fallback.demote(core, error)
            return output

    def _quarantined_states(self, last_event: Mapping[bytes | None, Event]) -> list[DeadLetter]:
        """The dead letters of the states the codec quarantined in this batch, counted."""
        changelog = self.states.changelog_topic.get_topic_name()
        letters = [DeadLetter.quarantined(
            "corrupt_state", error, raw, ticker=ticker, then="the ticker starts afresh from its next bar",
            source=f"{changelog}/{last_event[ticker.encode()].message.partition}")
            for ticker, raw, error in self.codec.quarantined]
        self.codec.quarantined.clear()
        if letters:
            self.monitor.observe_quarantined("state", len(letters))
        return letters

    async def _write_states(self, states: Mapping[str, TickerState],
                            shadow_states: list[tuple[str, int, bytes | None, bytes]], tables: TableAccess,
                            last_event: Mapping[bytes | None, Event], sender: Sender) -> None:
        """Each new state into the table's store, and to its changelog, to the partition Faust would
        write it to (its key's last event's): on the worker's own producer, one record batch per
        partition, delivered before this returns (see :mod:`stream_app.faust_adapter`). The
        challengers' states (already in the store, their changelog records in ``shadow_states``) go
        in the same record batches as their tickers' champion states."""
        changelog = self.states.changelog_topic.get_topic_name()
        records: list[tuple[str, int, bytes | None, bytes]] = []
        for ticker, state in states.items():
            key = ticker.encode()
            event = last_event[key]
            raw = self.codec.encode(ticker, state)
            tables.put(self.states, key, raw, event)
            records.append((changelog, event.message.partition, key, raw))
        offsets = await sender.send_placed(records + shadow_states)
        tables.persisted(self.states, {partition: offset for (_, partition), offset in offsets.items()})

    def _records(self, champion: list[tuple[str, dict]], dead_letters: list[DeadLetter],
                 shadow: list[tuple[str, dict]], extra: Mapping[str, Any]
                 ) -> list[tuple[str, bytes | None, bytes]]:
        """``(topic, key, value)`` of a batch's scores and predictions (:func:`prediction_records`),
        then its dead letters, then the challengers' records (``extra``: the worker's fields, added to
        each score and prediction)."""
        predictions, dlq, shadow_topic = (self.settings.topic_predictions, self.settings.topic_dlq,
                                          self.settings.topic_shadow)
        encode = record_encoder(extra)
        records: list[tuple[str, bytes | None, bytes]] = [
            (predictions, ticker.encode(), encode(record)) for ticker, record in champion]
        records += [(dlq, letter.ticker.encode() if letter.ticker else _dead_letter_key(letter.raw),
                     orjson.dumps(letter.to_dict()))
                    for letter in dead_letters]
        records += [(shadow_topic, ticker.encode(), encode(record)) for ticker, record in shadow]
        return records


def record_encoder(extra: Mapping[str, Any]) -> Callable[[dict], bytes]:
    """A function giving each record's ``orjson.dumps({**record, **extra})``, without the merged copy:
    the record's JSON with ``extra``'s members in place of its closing brace.

    The bytes are a new object of their own size, which saves more than the merge: orjson's result
    keeps its whole write buffer (8 KiB with orjson 3.13, some 20 times a record), and a batch's
    records are all held until sent; allocating those buffers cost several µs a record.
    """
    members = orjson.dumps(dict(extra))[1:-1]
    tail = b"," + members + b"}" if members else b"}"

    def encode(record: dict) -> bytes:
        if record and extra.keys().isdisjoint(record.keys()):
            return orjson.dumps(record)[:-1] + tail
        return orjson.dumps({**record, **extra})  # an empty record, or one that has a field of extra's

    return encode


def _ticker(key: bytes | None) -> str | None:
    # The ticker whose state a message's key names; a bar is applied only under its ticker's
    # exact bytes (stream_app.processor.decode_bar), so a key that is not UTF-8 names none.
    try:
        return key.decode() if key is not None else None
    except UnicodeDecodeError:
        return None


def _dead_letter_key(raw: str) -> bytes | None:
    # Dead letters are keyed by ticker when the raw message names one, so that a ticker's rejects
    # stay in order; otherwise they spread over partitions.
    try:
        ticker = orjson.loads(raw).get("ticker")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return ticker.encode() if isinstance(ticker, str) and ticker else None
