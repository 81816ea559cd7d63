"""The baseline the worker is measured against: a naive Faust agent, as tutorials write one.

One awaited ``topic.send`` and one table write per event, JSON codecs, no batching. Started by
``bench/worker_bench.py`` as ``faust -A bench.naive_faust_agent worker``; its topics come from the
``FORECASTER_*`` environment like the real worker's. ``NAIVE_AGENT_GUARANTEE`` sets Faust's
``processing_guarantee`` (default ``at_least_once``; ``bench/exactly_once_probe.py`` sets
``exactly_once``).
"""

from __future__ import annotations

import os
from pathlib import Path

import faust

from forecaster.kafka.client import bootstrap_list
from forecaster.settings import load

settings = load()
Path(settings.home).mkdir(parents=True, exist_ok=True)  # Faust does not create the datadir's parent
app = faust.App(
    settings.app_id,
    broker=[f"kafka://{server}" for server in bootstrap_list(settings.bootstrap)],
    store="memory://",
    datadir=f"{settings.home}/naive-agent",
    topic_partitions=settings.partitions,
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    processing_guarantee=os.environ.get("NAIVE_AGENT_GUARANTEE", "at_least_once"),
)
bars = app.topic(settings.topic_bars, value_serializer="json", partitions=settings.partitions)
out = app.topic(settings.topic_predictions, value_serializer="json", partitions=settings.partitions)
last_close = app.Table("last_close", default=float, partitions=settings.partitions)


@app.agent(bars)
async def naive(stream: faust.StreamT) -> None:
    async for bar in stream:
        previous = last_close[bar["ticker"]]
        last_close[bar["ticker"]] = bar["close"]
        await out.send(key=bar["ticker"], value={"ticker": bar["ticker"], "as_of": bar["date"],
                                                 "predicted_close": bar["close"], "previous": previous})
