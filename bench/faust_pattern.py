"""What the bench's Faust patterns share: the worker's app, the bars topic, one table, its start.

:mod:`bench.faust_pattern_agent` (the fixed reference, its table written through Faust) and
:mod:`bench.faust_pattern_own_changelog` (its changelog sent the worker's way) differ only in how
their agent writes the table; everything else is here, so that the two differ in nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import faust
from faust.types import TableT

from forecaster.kafka.client import aiokafka_options
from forecaster.settings import Settings, load
from stream_app.app import CHANGELOG_CONFIG, app_options, settle_collector
from stream_app.faust_adapter import ForecasterApp, TableAccess
from stream_app.sender import BatchSender, output_producer


def pattern_app(name: str, eager_consumer: bool) -> tuple[Settings, ForecasterApp, faust.TopicT, TableT]:
    """The settings (``FORECASTER_*``, like the real worker's), the app with the worker's Faust options
    and its local state in ``home/name``, the bars topic and the ``last_bar`` table. The app consumes
    through the worker's :class:`~stream_app.faust_adapter.EagerConsumer` when ``eager_consumer``,
    else through Faust's own consumer."""
    settings = load()
    datadir = Path(settings.home) / name
    datadir.mkdir(parents=True, exist_ok=True)
    app = ForecasterApp(settings, eager_consumer, datadir=str(datadir), **app_options(settings))
    bars = app.topic(settings.topic_bars, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    last_bar = app.Table("last_bar", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                         extra_topic_configs=CHANGELOG_CONFIG)

    @app.task
    async def on_worker_start() -> None:
        # As the worker does at start (stream_app.app): the root logger quiet, the collector set.
        logging.getLogger().setLevel(logging.WARNING)
        settle_collector()

    return settings, app, bars, last_bar


def keyed(events: Iterable[faust.EventT]) -> list[tuple[bytes, bytes, faust.EventT]]:
    """``(key, value, event)`` of the messages with both: every bar (the worker dead-letters others)."""
    return [(key, value, e) for e in events
            if (key := e.message.key) is not None and (value := e.message.value) is not None]

#: What :func:`batches` gives an agent: its batches of events, a sender and the table access.
Batches = tuple[AsyncIterator[Any], BatchSender, TableAccess]


@asynccontextmanager
async def batches(settings: Settings, app: ForecasterApp,
                  stream: faust.StreamT) -> AsyncIterator[Batches]:
    """The agent's batches as the worker takes them (``take_events``), a sender on an output producer
    of the worker's kind, and table access under each event's partition; the producer is stopped after."""
    producer = output_producer(aiokafka_options(settings), None, app.conf.producer_request_timeout)
    await producer.start()
    # Faust types an agent's stream as StreamT, which lacks take_events; it passes a Stream.
    real_stream = cast(faust.Stream, stream)
    try:
        yield (real_stream.take_events(settings.batch_size, within=settings.batch_timeout_s),
               BatchSender(producer), TableAccess(real_stream))
    finally:
        await producer.stop()
