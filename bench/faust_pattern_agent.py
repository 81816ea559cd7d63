"""The worker's Faust pattern with nothing to compute: what a Faust worker costs before its model.

The worker's Faust settings, event loop (``FAUST_LOOP``, uvloop by default: the bench gives every
contender the worker's settings in its environment) and batching (``take_events``), its outputs as
one record batch per partition, and one table write per key per batch under the key's own event,
but no validation, no model and no metrics: each bar goes on to ``predictions`` as it came and
stays as its ticker's state. Its rate is the most a worker built on Faust (unpatched, as the issue
asks: Faust's own consumer, not the worker's :class:`~stream_app.faust_adapter.EagerConsumer`) can
do on the machine even if the forecasting core cost nothing. Its table write is Faust's own
(``table[key] = value``, a changelog message per write), as when issue 23 measured the worker
against it; the worker now sends its states' changelog itself (:mod:`stream_app.batch`). Started by
``bench/worker_bench.py`` as ``faust -A bench.faust_pattern_agent worker -l warn``; its topics come
from the ``FORECASTER_*`` environment like the real worker's.
"""

from __future__ import annotations

import faust

from bench.faust_pattern import batches, keyed, pattern_app

settings, app, bars, last_bar = pattern_app("pattern-agent", eager_consumer=False)


@app.agent(bars)
async def echo(stream: faust.StreamT) -> None:
    async with batches(settings, app, stream) as (taken, sender, tables):
        async for events in taken:
            keyed_bars = keyed(events)
            await sender.send([(settings.topic_predictions, key, value) for key, value, _ in keyed_bars])
            for key, (value, event) in {key: (value, e) for key, value, e in keyed_bars}.items():
                tables.set(last_bar, key, value, event)
