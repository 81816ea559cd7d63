"""The worker's Faust pattern with its table written the worker's way: the like-for-like reference.

:mod:`bench.faust_pattern_agent` is the fixed reference of the worker's cost issues and writes its
table through Faust (``table[key] = value``: a changelog message, a future and a callback per
write). The worker no longer does: it puts each state into the table's store and sends the
changelog records itself, one record batch per partition on its own producer, delivered after the
batch's outputs (:meth:`stream_app.batch.BatchHandler._write_states`). This agent is that pattern
with that one difference, through the same pieces (:meth:`~stream_app.faust_adapter.TableAccess.put`,
:meth:`~stream_app.sender.BatchSender.send_placed`, :meth:`~stream_app.faust_adapter.TableAccess.persisted`),
so that the worker's CPU per bar against it is what the model, validation and metrics cost.
Everything else (settings, batches, outputs, the start-up task) is the reference's, repeated here
because importing that module would start its agent too. Started by ``bench/worker_bench.py`` as
``faust -A bench.faust_pattern_own_changelog worker -l warn``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import faust

from forecaster.kafka.client import aiokafka_options
from forecaster.settings import load
from stream_app.app import CHANGELOG_CONFIG, app_options
from stream_app.faust_adapter import ForecasterApp, TableAccess
from stream_app.sender import BatchSender, output_producer

settings = load()
datadir = Path(settings.home) / "pattern-own-changelog"
datadir.mkdir(parents=True, exist_ok=True)
app = ForecasterApp(settings, datadir=str(datadir), **app_options(settings))
bars = app.topic(settings.topic_bars, key_type=bytes, value_type=bytes, partitions=settings.partitions)
last_bar = app.Table("last_bar", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                     extra_topic_configs=CHANGELOG_CONFIG)


def _keyed(events: Iterable[faust.EventT]) -> list[tuple[bytes, bytes, faust.EventT]]:
    """``(key, value, event)`` of the messages with both: every bar (the worker dead-letters others)."""
    return [(key, value, e) for e in events
            if (key := e.message.key) is not None and (value := e.message.value) is not None]


@app.agent(bars)
async def echo(stream: faust.StreamT) -> None:
    producer = output_producer(aiokafka_options(settings), None, app.conf.producer_request_timeout)
    await producer.start()
    sender = BatchSender(producer)
    # Faust types an agent's stream as StreamT, which lacks take_events; it passes a Stream.
    real_stream = cast(faust.Stream, stream)
    tables = TableAccess(real_stream)
    changelog = last_bar.changelog_topic.get_topic_name()
    try:
        batches = real_stream.take_events(settings.batch_size, within=settings.batch_timeout_s)
        async for events in batches:
            keyed = _keyed(events)
            await sender.send([(settings.topic_predictions, key, value) for key, value, _ in keyed])
            # As the worker writes its states: each key's last value into the store under the key's
            # last event, its changelog record to that event's partition, delivered, then noted.
            records = []
            for key, (value, event) in {key: (value, e) for key, value, e in keyed}.items():
                tables.put(last_bar, key, value, event)
                records.append((changelog, event.message.partition, key, value))
            offsets = await sender.send_placed(records)
            tables.persisted(last_bar, {partition: offset for (_, partition), offset in offsets.items()})
    finally:
        await producer.stop()


@app.task
async def on_worker_start() -> None:
    # As the worker does at start (stream_app.app): the root logger quiet, start-up out of the
    # collector's passes.
    logging.getLogger().setLevel(logging.WARNING)
    gc.freeze()
