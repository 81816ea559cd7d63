"""The Faust application: ``bars`` in, ``predictions`` and ``bars.dlq`` out, state in a table.

Start it with ``forecaster worker`` or ``faust -A stream_app.app worker -l warn --without-web``; both read the
settings from ``FORECASTER_*`` environment variables.

How a batch is handled, and why in this order (at-least-once without loss):

1. ``take_events`` hands the agent up to ``batch_size`` events (of any partitions assigned);
2. :class:`~stream_app.positions.PositionGuard` admits, per partition, the messages from the
   position stored in the ``source_positions`` table on, skipping redeliveries and seeking the
   consumer back where it skipped offsets (a Faust race on rebalances, see that module); a
   timer seeks back partitions that stay behind their high water mark without moving
   (:class:`~stream_app.positions.StallWatch`);
3. :class:`~stream_app.processor.BatchProcessor` computes scores, predictions, dead letters and new
   states, without Kafka;
4. the outputs are sent as one record batch per partition on a producer of the worker's own
   (:mod:`stream_app.sender`) and their delivery is awaited;
5. only then are each touched ticker's state and each partition's new position written to the
   tables, once per batch, each under an event of its own partition. After ``take_events`` Faust
   would write every key to the changelog partition (and RocksDB partition) of the batch's *last*
   event, putting other tickers' states where recovery never looks for them; Faust has no public
   way to say which event a write belongs to, so the stream's current event is set per key
   (:mod:`stream_app.table_access`; the reads need it too with RocksDB);
6. Faust commits the offsets later, after flushing the producer (changelog included). Those
   offsets only say where a restarted consumer starts; the positions say what was handled.

A crash between 4 and 5 makes the bars come again and produce the same records again (the core is
deterministic); after 5 they come again below the position and are skipped, their records being
out. Either way no prediction is lost and no state applies a bar twice.
An unexpected error in a batch ends the process at once: Faust would otherwise ack the batch's
events and restart the agent, committing offsets of bars whose states were never written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import faust
import orjson
from aiokafka.errors import IllegalStateError
from faust.types import TP

from forecaster import settings as settings_module
from forecaster.kafka.client import aiokafka_options, bootstrap_list, faust_credentials
from forecaster.kafka.topics import TopicSpec, create_topics
from forecaster.settings import Settings
from models.core.config import CoreConfig
from models.core.features import FEATURE_NAMES
from models.core.state import StateVersionError, TickerState
from models.drift import Reference
from stream_app.metrics import WorkerMetrics
from stream_app.monitor import ForecastMonitor
from stream_app.positions import PositionGuard, StallWatch
from stream_app.processor import BatchProcessor, InMessage, prediction_records
from stream_app.sender import BatchSender, output_producer
from stream_app.table_access import TableAccess

log = logging.getLogger(__name__)

TABLE_NAME = "ticker_state"
POSITIONS_TABLE_NAME = "source_positions"
EXIT_BATCH_FAILED = 70  # EX_SOFTWARE
#: The changelog holds one state per ticker per batch (kilobytes each); only the latest counts.
#: Compaction cleans closed segments only, so small, time-bounded segments keep what a restarted
#: worker must read close to one state per ticker instead of every state ever written: after
#: 100,000 bars of 483 tickers, 1 MiB segments made the restart 5.5 s where 16 MiB took 13.5 s
#: (docs/benchmarks.md). 1 MiB is the smallest size Kafka 4 accepts.
CHANGELOG_CONFIG = {"segment.bytes": str(1024 * 1024), "segment.ms": str(10 * 60 * 1000),
                    "min.cleanable.dirty.ratio": "0.1"}
LAG_INTERVAL_S = 5.0
#: How long an assigned partition may sit below its high water mark without moving before it is
#: sought back to its position, and how often that is checked. A healthy worker moves every
#: partition with messages within a batch timeout; a false alarm costs a seek and some redeliveries.
STALL_PATIENCE_S = 5.0
STALL_CHECK_S = 1.0
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


class StateCodec:
    """Ticker states to and from the table's bytes, each state decoded once.

    The worker writes the states' bytes itself (:meth:`encode`) and keeps the state each came from:
    while the table holds those bytes, the state is that one. Bytes it did not write (recovered
    from the changelog) are decoded. A state decoded in every batch cost 4 % of the worker's
    thread under load; RocksDB hands back a new copy at every read, hence equality, not identity.
    """

    def __init__(self) -> None:
        self._known: dict[str, tuple[bytes, TickerState]] = {}

    def decode(self, ticker: str, raw: bytes | None) -> TickerState | None:
        """The state behind ``raw``, ``ticker``'s bytes in the table (None: no state yet)."""
        if raw is None:
            return None
        known = self._known.get(ticker)
        if known is not None and known[0] == raw:
            return known[1]
        try:
            state = TickerState.from_bytes(raw)
        except StateVersionError as error:
            # A state of another format (an upgrade) must not stop the worker at every restart: the
            # ticker warms up again from its next bar, as a new ticker does.
            log.warning("ticker %s starts afresh: %s", ticker, error)
            return None
        self._known[ticker] = (raw, state)
        return state

    def encode(self, ticker: str, state: TickerState) -> bytes:
        """The bytes to write for ``ticker``'s new state, remembered with it."""
        raw = state.to_bytes()
        self._known[ticker] = (raw, state)
        return raw


class ForecastService:
    """What the agent and timers share: the processor, the model, the metrics."""

    def __init__(self, app: faust.App, settings: Settings, table: Any, positions: Any) -> None:
        self.app = app
        self.settings = settings
        self.table = table
        self.positions = positions  # b"topic/partition" -> offset after the last handled message
        self.codec = StateCodec()
        self.guard = PositionGuard()
        self.stall_watch = StallWatch(STALL_PATIENCE_S)
        self._generation: int | None = None  # the consumer group generation last seen
        self._in_batch = False  # an exception in a batch ends the process (see the agent)
        self.metrics = WorkerMetrics()
        self.monitor = ForecastMonitor(settings, self.metrics)
        self.processor: BatchProcessor | None = None
        self.sender: BatchSender | None = None
        self.model_version: str | None = None
        self._start_lock: asyncio.Lock | None = None
        self.log_level = logging.WARNING  # `forecaster worker -l` sets the level it was asked for

    async def ensure_started(self) -> tuple[BatchProcessor, BatchSender]:
        """Serve the metrics, load the model and start the output producer, once (at start; the
        first batch waits for it)."""
        if self.processor is not None and self.sender is not None:
            return self.processor, self.sender
        self._start_lock = self._start_lock or asyncio.Lock()
        async with self._start_lock:
            if self.processor is None:
                self.metrics.serve(self.settings.metrics_host, self.settings.metrics_port)
                await self.reload_model()
            if self.sender is None:
                producer = output_producer(aiokafka_options(self.settings),
                                           compression_type(self.settings.worker_compression),
                                           self.app.conf.producer_request_timeout)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()  # its half-open connections; the next batch tries again
                    raise
                self.sender = BatchSender(producer)
        assert self.processor is not None and self.sender is not None
        return self.processor, self.sender

    async def stop(self) -> None:
        """Stop the output producer (after the agent's last batch: it flushes what is pending)."""
        if self.sender is not None:
            await self.sender.producer.stop()
            self.sender = None

    async def reload_model(self) -> None:
        """Serve the registry's champion; keep serving the current model when it is unchanged."""
        from models import registry

        version = await asyncio.to_thread(registry.champion_version, self.settings)
        if self.processor is not None and version == self.model_version:
            return
        config = CoreConfig.from_settings(self.settings)
        model = await asyncio.to_thread(registry.load_champion, self.settings) if version else None
        reference = None
        if model is None:
            log.warning("no champion registered as %r in %s: serving the core's %r model",
                        self.settings.model_name, self.settings.mlflow_registry_uri, config.model)
            name, served = config.model, "core"
        else:
            config = CoreConfig(**{**config.__dict__, "model": "external"})
            raw_reference = await asyncio.to_thread(registry.load_reference, self.settings) or {}
            reference = {name: Reference.from_dict(data) for name, data in raw_reference.items()}
            name, served = model.name, model.version
            log.warning("serving champion %s version %s", name, served)
        self.processor = BatchProcessor(config, model, topic=self.settings.topic_bars)
        self.model_version = version
        self.monitor.set_model(name, served, reference, FEATURE_NAMES)

    async def handle(self, events: list[Any], stream: faust.StreamT) -> None:
        processor, sender = await self.ensure_started()
        self._note_generation()
        self._in_batch = True
        started = time.perf_counter()
        messages = [
            InMessage(e.message.key, e.message.value, e.message.partition, e.message.offset,
                      e.message.timestamp)
            for e in events
        ]
        # Each key read and written under its own last event: see stream_app.table_access.
        tables = TableAccess(stream)
        last_event = {e.message.key: e for e in events}
        last_of_partition = {e.message.partition: e for e in events}
        positions = {partition: _position(tables.get(self.positions, self._position_key(partition), event))
                     for partition, event in last_of_partition.items()}
        admission = self.guard.admit(messages, positions)
        states = {ticker: self.codec.decode(ticker, tables.get(self.table, key, event))
                  for key, event in last_event.items() if (ticker := _ticker(key)) is not None}
        output = processor.process(admission.admitted, states)
        produced_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        predictions, dlq = self.settings.topic_predictions, self.settings.topic_dlq
        records: list[tuple[str, bytes | None, bytes]] = [(predictions, ticker.encode(), orjson.dumps(record))
                   for ticker, record in prediction_records(output, {"produced_at": produced_at})]
        records += [(dlq, _dead_letter_key(letter.raw), orjson.dumps(letter.to_dict()))
                    for letter in output.dead_letters]
        await sender.send(records)
        for ticker, state in output.states.items():
            key = ticker.encode()
            tables.set(self.table, key, self.codec.encode(ticker, state), last_event[key])
        for partition, position in admission.positions.items():
            tables.set(self.positions, self._position_key(partition), str(position).encode(),
                       last_of_partition[partition])
        for partition, (position, offset) in admission.rewinds.items():
            await self.rewind(partition, position, offset)
        for partition, start, end in admission.passed_gaps:
            log.warning("bars partition %d: offsets %d to %d hold no message (transaction markers or "
                        "retention); going on from %d", partition, start, end - 1, end)
        self.metrics.redelivered.inc(admission.redelivered)
        self.monitor.observe_partitions({ticker: m.partition for m in admission.admitted
                                         if (ticker := _ticker(m.key)) is not None})
        self.monitor.observe_batch(output.results, time.perf_counter() - started)
        self.monitor.observe_dead_letters(letter.reason for letter in output.dead_letters)
        self.monitor.observe_delivery(m.timestamp for m in admission.admitted)
        self._in_batch = False

    def position(self, partition: int) -> int | None:
        """The offset after the last handled message of a ``bars`` partition (None: none yet).

        For the timers, outside any event (the stores then look in every partition).
        """
        return _position(self.positions.get(self._position_key(partition)))

    def _position_key(self, partition: int) -> bytes:
        # With the topic: a worker pointed at another bars topic must not take its offsets for
        # those of the old one (it would skip the new topic's first messages as handled).
        return f"{self.settings.topic_bars}/{partition}".encode()

    def _note_generation(self) -> None:
        # A rebalance seeks every partition to the committed offsets: what the guard learnt from
        # its rewinds, and how long partitions sat still, no longer hold.
        generation = self.app.consumer_generation_id
        if generation != self._generation:
            self._generation = generation
            self.guard.forget()
            self.stall_watch.reset()

    async def rewind(self, partition: int, position: int, offset: int) -> None:
        """Seek a partition back to its position: the consumer skipped from there to ``offset``."""
        if self.app.rebalancing:
            # Faust waits for the agent's events to be acked before it revokes partitions, and
            # seeks them itself when it assigns them: no seek now. Unless the rebalance brings them
            # back, the stall watch seeks once it is over.
            log.warning("bars partition %d: the consumer skipped offsets %d to %d during a rebalance; "
                        "leaving them to the stall watch", partition, position, offset - 1)
            self.stall_watch.suspect(partition, position)
            return
        # Messages fetched before the seek keep coming for a while, each batch of them another
        # rewind to the same position: one warning for them all.
        if self.guard.rewinding(partition) != position:
            log.warning("bars partition %d: the consumer skipped offsets %d to %d; seeking back to %d",
                        partition, position, offset - 1, position)
        if await self._seek(partition, position):
            self.guard.rewound(partition, position, offset)

    async def seek_stalled(self) -> None:
        """Seek back the partitions that sit below their high water mark without moving.

        Nothing comes to the guard from a partition the consumer was sought past its last message
        (a rebalance seeking to offsets committed at its end), so no skip is ever seen there. Only
        an idle agent counts: a batch that takes long (outputs waiting for a broker that is down)
        holds every partition still, and seeking then would only cause redeliveries.
        """
        if self.app.rebalancing or self.processor is None:
            return
        self._note_generation()
        if self._in_batch:
            self.stall_watch.hold()
            return
        now = time.monotonic()
        for partition, position, highwater in self._bars_partitions():
            if self.stall_watch.stalled(partition, position, highwater, now):
                log.warning("bars partition %d: no progress at offset %d with %d offsets after it; "
                            "seeking back to it", partition, position, highwater - position)
                await self._seek(partition, position)

    async def _seek(self, partition: int, position: int) -> bool:
        """Seek a partition of ``bars`` to ``position``; False when it is no longer assigned."""
        consumer = self.app.consumer
        tp = TP(self.settings.topic_bars, partition)
        if tp not in consumer.assignment():
            return False  # its next owner starts from the position
        # In the consumer's own thread (Faust's plain seek() changes aiokafka's state from this one).
        try:
            await consumer.seek_wait({tp: position})
        except IllegalStateError:  # revoked meanwhile
            return False
        self.metrics.rewinds.inc()
        return True

    def _bars_partitions(self) -> Iterator[tuple[int, int, int]]:
        """``(partition, position, high water mark)`` of each assigned ``bars`` partition that has both."""
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic != self.settings.topic_bars:
                continue
            position = self.position(tp.partition)
            try:
                highwater = consumer.highwater(tp)  # None before the partition's first fetch
            except (AssertionError, IllegalStateError):
                # aiokafka asserts the partition is assigned, and the assignment lives in the
                # consumer's thread: it can be revoked between assignment() and this call.
                continue
            if position is not None and highwater is not None:
                yield tp.partition, position, highwater

    async def export_consumer_lag(self) -> None:
        for partition, position, highwater in self._bars_partitions():
            self.monitor.observe_consumer_lag(partition, max(0, highwater - position))

    def on_assignment(self, assigned: set[TP]) -> None:
        """A rebalance gave this worker ``assigned``: stop exporting what it no longer owns."""
        bars = self.settings.topic_bars
        self.monitor.retain_partitions({tp.partition for tp in assigned if tp.topic == bars})


def _position(raw: bytes | None) -> int | None:
    return int(raw) if raw is not None else None


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


def compression_type(name: str) -> str | None:
    """Kafka's codec for ``FORECASTER_WORKER_COMPRESSION=name`` (None: uncompressed)."""
    if name not in COMPRESSIONS:
        raise ValueError(f"FORECASTER_WORKER_COMPRESSION={name!r} is not one of {', '.join(COMPRESSIONS)}")
    return None if name == "none" else name


class ForecasterApp(faust.App):
    """Faust's app, with its tables' changelog topics made before its consumer joins the group.

    Faust creates a missing changelog topic while its consumer joins; when the metadata of the join
    misses the new topic, Faust takes it for a topic of 0 partitions and the table's first write
    fails with ``PartitionsMismatch`` (seen on a fresh broker in ``make demo``).
    """

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(settings.app_id, **options)
        self.forecaster_settings = settings

    def changelog_topics(self) -> list[TopicSpec]:
        """The tables' changelog topics as Faust declares them (compacted: a table holds no window)."""
        replication = self.forecaster_settings.replication_factor
        topics = [table.changelog_topic for table in self.tables.values()]
        return [TopicSpec(topic.get_topic_name(), topic.partitions, replication,
                          {"cleanup.policy": "compact", **(topic.config or {})}) for topic in topics]

    async def on_stop(self) -> None:
        # Faust's own stop drains the agent's batches first; they need the output producer.
        await super().on_stop()
        service = getattr(self, "forecast_service", None)
        if service is not None:
            await service.stop()

    async def on_first_start(self) -> None:
        await super().on_first_start()
        from kafka.errors import KafkaError

        try:
            await asyncio.to_thread(create_topics, self.forecaster_settings, self.changelog_topics())
        except KafkaError as exc:  # e.g. no right to list topics: Faust still tries on its own
            log.warning("could not make the changelog topics before joining the group (%s); "
                        "leaving them to Faust", exc)


def app_options(settings: Settings) -> dict[str, Any]:
    """Faust's settings of the worker (the bench's Faust pattern agent runs with them too)."""
    return dict(
        broker=[f"kafka://{server}" for server in bootstrap_list(settings.bootstrap)],
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        web_enabled=False,  # metrics have their own endpoint (the CLI needs --without-web too)
        producer_acks=-1,
        producer_max_batch_size=512 * 1024,
        producer_linger=0.005,
        # The changelog's states are float arrays that lz4 barely shrinks, at a seventh of the
        # worker's CPU (docs/benchmarks.md); the default sends them as they are.
        producer_compression_type=compression_type(settings.worker_compression),
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=max(4096, 2 * settings.batch_size),
        consumer_auto_offset_reset="earliest",
        # No leader topic (nothing here runs on_leader): its one partition never holds a message,
        # and when every bars partition still had records waiting for the agent, aiokafka sent a
        # fetch for it alone, which the broker parks for Faust's fetch_max_wait_ms (1.5 s) while no
        # other fetch goes to that broker: bars then reached the agent 1.5 s late, again and again
        # (docs/benchmarks.md, the latency runs).
        topic_disable_leader=True,
        # Faust waits 60 s by default before giving a dead worker's partitions to the others; a
        # stream of daily bars for many tickers is better served by a quick takeover.
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        key_serializer="raw",
        value_serializer="raw",  # the tables hold bytes: the core's states, positions
    )


def create_app(settings: Settings) -> faust.App:
    """The Faust app for ``settings``; nothing connects until a worker starts."""
    datadir = Path(settings.home) / "worker"
    app = ForecasterApp(settings, datadir=str(datadir), **app_options(settings))
    bars_topic = app.topic(settings.topic_bars, key_type=bytes, value_type=bytes,
                           partitions=settings.partitions)
    table = app.Table(TABLE_NAME, key_type=bytes, value_type=bytes, partitions=settings.partitions,
                      extra_topic_configs=CHANGELOG_CONFIG)
    positions = app.Table(POSITIONS_TABLE_NAME, key_type=bytes, value_type=bytes,
                          partitions=settings.partitions, extra_topic_configs=CHANGELOG_CONFIG)
    service = ForecastService(app, settings, table, positions)
    app.forecast_service = service  # type: ignore[attr-defined]  # for the CLI and tests

    @app.agent(bars_topic, name="forecast")
    async def forecast(stream: faust.StreamT) -> None:
        # Faust types an agent's stream as StreamT, which lacks take_events; it passes a Stream.
        batches = cast(faust.Stream, stream).take_events(settings.batch_size, within=settings.batch_timeout_s)
        async for events in batches:
            try:
                await service.handle(list(events), stream)
            except Exception:
                # Poison never gets here (it is dead-lettered); this is a bug or a lost broker. Leave
                # before Faust acks the batch, so that it is processed again after the restart.
                log.critical("processing a batch failed; exiting so that it is processed again after "
                             "a restart", exc_info=True)
                logging.shutdown()
                os._exit(EXIT_BATCH_FAILED)

    @app.timer(settings.model_reload_s)
    async def reload_champion() -> None:
        if service.processor is not None:
            try:
                await service.reload_model()
            except Exception:  # a registry hiccup must not stop the stream
                log.exception("checking the registry for a new champion failed; keeping the current model")

    # mode types a handler as taking any number of positional arguments; this signal sends one.
    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def drop_series_of_lost_partitions(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        # Faust's (eager) rebalances hand every worker its whole new assignment here.
        service.on_assignment(assigned)

    @app.timer(LAG_INTERVAL_S)
    async def consumer_lag() -> None:
        await service.export_consumer_lag()

    @app.timer(STALL_CHECK_S)
    async def stalled_partitions() -> None:
        await service.seek_stalled()

    @app.task
    async def on_worker_start() -> None:
        # Faust leaves the root logger at DEBUG whatever its -l; records formatted and dropped there
        # cost about 10 % of the worker's CPU.
        logging.getLogger().setLevel(service.log_level)
        # Metrics and the model are up before the first bar, so an idle worker is visible too.
        await service.ensure_started()
        # What start-up loaded (modules, Faust, the model) lives as long as the worker: out of the
        # collector's full passes, which took 60-90 ms each, every few seconds, with it in them
        # (the latency tail, docs/benchmarks.md); with it frozen they take about 3 ms.
        gc.freeze()

    datadir.mkdir(parents=True, exist_ok=True)  # Faust does not create a missing parent
    return app


app = create_app(settings_module.load())
