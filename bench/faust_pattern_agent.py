"""The worker's Faust pattern with nothing to compute: what a Faust worker costs before its model.

The worker's Faust settings and batching (``take_events``), its outputs as one record batch per
partition, and one table write per key per batch under the key's own event, but no validation, no
model and no metrics: each bar goes on to ``predictions`` as it came and stays as its ticker's
state. Its rate is the most a worker built on Faust (unpatched, as the issue asks) can do on the
machine even if the forecasting core cost nothing. Its table write is Faust's own (``table[key] = value``,
a changelog message per write), as when issue 23 measured the worker against it; the worker now
sends its states' changelog itself (:mod:`stream_app.batch`). Started by ``bench/worker_bench.py`` as
``faust -A bench.faust_pattern_agent worker -l warn``; its topics come from the ``FORECASTER_*``
environment like the real worker's.
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
datadir = Path(settings.home) / "pattern-agent"
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
    try:
        batches = real_stream.take_events(settings.batch_size, within=settings.batch_timeout_s)
        async for events in batches:
            keyed = _keyed(events)
            await sender.send([(settings.topic_predictions, key, value) for key, value, _ in keyed])
            for key, (value, event) in {key: (value, e) for key, value, e in keyed}.items():
                tables.set(last_bar, key, value, event)
    finally:
        await producer.stop()


@app.task
async def on_worker_start() -> None:
    # As the worker does at start (stream_app.app): the root logger quiet, start-up out of the
    # collector's passes.
    logging.getLogger().setLevel(logging.WARNING)
    gc.freeze()
