"""The Faust application: ``bars`` in, ``predictions`` and ``bars.dlq`` out, state in a table.

Start it with ``forecaster worker`` or ``faust -A stream_app.app worker -l warn --without-web``; the
first passes its settings to :func:`create_app`, the second finds the module's ``app``, built from
the ``FORECASTER_*`` environment variables when Faust asks for it.

The parts, each with one job, wired by :func:`create_app`:

* :class:`~stream_app.batch.BatchHandler` handles a batch (admit, process, send, write);
* :class:`~stream_app.model_holder.ModelHolder` loads the champion, and again when it changes, and
  the challengers (none unless a ``challenger`` alias exists);
* :class:`~stream_app.shadow.Shadow` runs the challengers on the champion's bars (its module says how);
* :class:`~stream_app.position_keeper.PositionKeeper` keeps each ``bars`` partition's position and
  seeks the consumer back to it (rewinds, stalls); it also tells the consumer lag;
* :class:`Startup` brings the metrics, the model and the output producer up before the first batch;
* :mod:`stream_app.faust_adapter` holds every use of Faust beyond its documented API.

How a batch is handled, and why in this order (at-least-once without loss):

1. ``take_events`` hands the agent up to ``batch_size`` events (of any partitions assigned);
2. :class:`~stream_app.positions.PositionGuard` admits, per partition, the messages from the
   position stored in the ``source_positions`` table on, skipping redeliveries and seeking the
   consumer back where it skipped offsets (a Faust race on rebalances, see that module); a
   timer seeks back partitions that stay behind their high water mark without moving
   (:class:`~stream_app.positions.StallWatch`);
3. :class:`~stream_app.processor.BatchProcessor` computes scores, predictions, dead letters and new
   states, without Kafka; each challenger then steps the same bars from states of its own;
4. the outputs (the challengers' to ``predictions.shadow``) are sent as one record batch per
   partition on a producer of the worker's own (:mod:`stream_app.sender`) and their delivery is
   awaited;
5. only then are each touched ticker's state and each partition's new position written to the
   tables, once per batch, each under an event of its own partition. After ``take_events`` Faust
   would write every key to the changelog partition (and RocksDB partition) of the batch's *last*
   event, putting other tickers' states where recovery never looks for them; Faust has no public
   way to say which event a write belongs to, so the stream's current event is set per key
   (:class:`~stream_app.faust_adapter.TableAccess`; the reads need it too with RocksDB). The
   states' changelog records go out on the worker's own producer, one record batch per
   partition, and are delivered before the positions are written (Faust's path for them cost
   about a fifth of the worker's CPU);
6. Faust commits the offsets later, after flushing its producer (the positions' changelog). Those
   offsets only say where a restarted consumer starts; the positions say what was handled.

A crash between 4 and 5 makes the bars come again and produce the same records again (the core is
deterministic); after 5 they come again below the position and are skipped, their records being
out. Either way no prediction is lost and no state applies a bar twice.
An unexpected error in a batch ends the process at once: Faust would otherwise ack the batch's
events and restart the agent, committing offsets of bars whose states were never written.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import faust
from faust.types import TP

from forecaster import settings as settings_module
from forecaster.kafka.client import aiokafka_options, bootstrap_list, faust_credentials
from forecaster.redaction import redact_logs
from forecaster.settings import Settings
from stream_app.batch import BatchHandler
from stream_app.faust_adapter import BarsConsumer, ForecasterApp, TableAccess
from stream_app.metrics import WorkerMetrics
from stream_app.model_holder import ModelHolder
from stream_app.monitor import ForecastMonitor
from stream_app.position_keeper import STALL_CHECK_S, PositionKeeper
from stream_app.processor import BatchProcessor
from stream_app.sender import BatchSender, output_producer
from stream_app.shadow import Shadow

log = logging.getLogger(__name__)

TABLE_NAME = "ticker_state"
POSITIONS_TABLE_NAME = "source_positions"
EXIT_BATCH_FAILED = 70  # EX_SOFTWARE
EXIT_REFUSED = 78  # EX_CONFIG: the broker refused the worker in its group
#: The changelog holds one state per ticker per batch (kilobytes each); only the latest counts.
#: Compaction cleans closed segments only, so small, time-bounded segments keep what a restarted
#: worker must read close to one state per ticker (restart times in docs/benchmarks.md, "Stream
#: worker"). 1 MiB is the smallest size Kafka 4 accepts.
CHANGELOG_CONFIG = {"segment.bytes": str(1024 * 1024), "segment.ms": str(10 * 60 * 1000),
                    "min.cleanable.dirty.ratio": "0.1"}
LAG_INTERVAL_S = 5.0


def compression_type(name: str) -> str | None:
    """Kafka's codec for ``FORECASTER_WORKER_COMPRESSION=name``, one of
    :data:`forecaster.settings.COMPRESSIONS` (None: uncompressed)."""
    return None if name == "none" else name


class Startup:
    """Brings the worker up once: its metrics served, its model loaded, its output producer started.

    At start, and the first batch waits for it; a failed start is tried again by the next batch.

    Parameters
    ----------
    settings
        The worker's settings (the metrics' address, the broker).
    metrics
        The metrics to serve.
    model
        The model to load.
    request_timeout_s
        How long the output producer retries a batch (Faust's ``producer_request_timeout``).
    """

    def __init__(self, settings: Settings, metrics: WorkerMetrics, model: ModelHolder,
                 request_timeout_s: float) -> None:
        self.settings = settings
        self.metrics = metrics
        self.model = model
        self.request_timeout_s = request_timeout_s
        self.sender: BatchSender | None = None
        self._lock: asyncio.Lock | None = None

    async def ensure(self) -> tuple[BatchProcessor, BatchSender]:
        """The model's processor and the sender, started first if need be."""
        if self.model.processor is not None and self.sender is not None:
            return self.model.processor, self.sender
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self.model.processor is None:
                self.metrics.serve(self.settings.metrics_host, self.settings.metrics_port)
                await self.model.reload()
            if self.sender is None:
                producer = output_producer(aiokafka_options(self.settings),
                                           compression_type(self.settings.worker_compression),
                                           self.request_timeout_s)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()  # its half-open connections; the next batch tries again
                    raise
                self.sender = BatchSender(producer)
        assert self.model.processor is not None and self.sender is not None
        return self.model.processor, self.sender

    async def stop(self) -> None:
        """Stop the output producer (after the agent's last batch: it flushes what is pending)."""
        if self.sender is not None:
            await self.sender.producer.stop()
            self.sender = None


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


@dataclass(frozen=True)
class WorkerParts:
    """The worker's parts, as :func:`create_app` wires them."""

    metrics: WorkerMetrics
    monitor: ForecastMonitor
    model: ModelHolder
    keeper: PositionKeeper
    handler: BatchHandler
    startup: Startup


def create_app(settings: Settings, log_level: int = logging.WARNING) -> ForecasterApp:
    """The Faust app for ``settings``, logging at ``log_level``; nothing connects until a worker starts."""
    datadir = settings.worker_dir
    app = ForecasterApp(settings, datadir=str(datadir), **app_options(settings))
    bars_topic = app.topic(settings.topic_bars, key_type=bytes, value_type=bytes,
                           partitions=settings.partitions)
    states = app.Table(TABLE_NAME, key_type=bytes, value_type=bytes, partitions=settings.partitions,
                       extra_topic_configs=CHANGELOG_CONFIG)
    positions = app.Table(POSITIONS_TABLE_NAME, key_type=bytes, value_type=bytes,
                          partitions=settings.partitions, extra_topic_configs=CHANGELOG_CONFIG)
    metrics = WorkerMetrics()
    monitor = ForecastMonitor(settings, metrics)
    model = ModelHolder(settings, monitor)
    keeper = PositionKeeper(positions, settings.topic_bars, BarsConsumer(app, settings.topic_bars), metrics)
    shadow = Shadow(settings, states, model.challengers, metrics)
    handler = BatchHandler(settings, states, keeper, monitor, shadow, fallback=model)
    parts = WorkerParts(metrics, monitor, model, keeper, handler,
                        Startup(settings, metrics, model, app.conf.producer_request_timeout))
    app.after_stop = parts.startup.stop  # Faust's stop drains the agent's batches first: they need it
    app.on_refused = partial(_exit_refused, settings.app_id)
    _run_parts(app, bars_topic, settings, parts, log_level)
    datadir.mkdir(parents=True, exist_ok=True)  # Faust does not create a missing parent
    return app


def _exit_refused(group: str, error: BaseException) -> None:
    """Leave at once: nothing but the settings or the broker's can change the broker's refusal, and a
    worker that waited would consume nothing."""
    log.critical("the broker refused this worker in the consumer group %s: %s: %s; exiting (check "
                 "FORECASTER_SESSION_TIMEOUT_S against the broker's group.min/max.session.timeout.ms, and "
                 "the group's ACLs)", group, type(error).__name__, error)
    logging.shutdown()
    os._exit(EXIT_REFUSED)


def _run_parts(app: ForecasterApp, bars_topic: faust.TopicT, settings: Settings, parts: WorkerParts,
               log_level: int) -> None:
    """The agent, timers, signal handler and start-up task that call the parts."""

    @app.agent(bars_topic, name="forecast")
    async def forecast(agent_stream: faust.StreamT) -> None:
        stream = cast(faust.Stream, agent_stream)  # what agents get; StreamT declares no take_events
        tables = TableAccess(stream)
        async for events in stream.take_events(settings.batch_size, within=settings.batch_timeout_s):
            try:
                processor, sender = await parts.startup.ensure()
                await parts.handler.handle(list(events), tables, processor, sender)
            except Exception:
                # Poison never gets here (it is dead-lettered); this is a bug or a lost broker. Leave
                # before Faust acks the batch, so that it is processed again after the restart.
                log.critical("processing a batch failed; exiting so that it is processed again after "
                             "a restart", exc_info=True)
                logging.shutdown()
                os._exit(EXIT_BATCH_FAILED)

    @app.timer(settings.model_reload_s)
    async def reload_champion() -> None:
        await parts.model.check_for_new_champion()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # its type misses the assignment Faust sends
    async def drop_series_of_lost_partitions(sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        # Faust's (eager) rebalances hand every worker its whole new assignment here: stop exporting
        # what it no longer owns.
        parts.monitor.retain_partitions({tp.partition for tp in assigned if tp.topic == settings.topic_bars})

    @app.timer(LAG_INTERVAL_S)
    async def consumer_lag() -> None:
        # Each batch exports the lag of the partitions it moved (BatchHandler.handle); this covers
        # the partitions no batch moves (idle, or stalled) and a high water mark that grew since.
        for partition, lag in await parts.keeper.lags():
            parts.monitor.observe_consumer_lag(partition, lag)

    @app.timer(STALL_CHECK_S)
    async def stalled_partitions() -> None:
        if parts.model.processor is not None:  # started
            await parts.keeper.seek_stalled(busy=parts.handler.busy)

    @app.task
    async def on_worker_start() -> None:
        # Faust leaves the root logger at DEBUG whatever its -l; records formatted and dropped there
        # cost about 10 % of the worker's CPU.
        logging.getLogger().setLevel(log_level)
        # Metrics and the model are up before the first bar, so an idle worker is visible too.
        await parts.startup.ensure()
        settle_collector()


#: Passes over the middle generation between two of the collector's full passes (Python's default is 10).
FULL_PASS_AFTER = 100


def settle_collector() -> None:
    """Set the garbage collector for a worker that has started.

    What start-up loaded (modules, Faust, the model) lives as long as the worker: frozen, out of the
    collector's full passes, which it made long enough to show in the latency tail. And a full pass
    comes after 100 passes over the middle generation instead of 10: under a backlog the messages
    Faust holds in its fetch and stream buffers (some 100,000 objects) live long enough to reach the
    oldest generation, so Python's default made a full pass over them about once a batch, 15-20 µs
    of the worker's CPU a bar (docs/benchmarks.md). They die by reference count; only cycles wait
    for the rarer passes.
    """
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_PASS_AFTER)


def __getattr__(name: str) -> Any:
    # `faust -A stream_app.app` asks for `app`: built from the environment then, and only then, so
    # that importing this module (forecaster worker, the tests) builds nothing.
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    redact_logs()  # as `forecaster worker` does: Faust's CLI is the process's only entry here
    app = globals()["app"] = create_app(settings_module.load())
    return app
