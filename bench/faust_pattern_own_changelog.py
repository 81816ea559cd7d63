"""The worker's Faust pattern consuming and writing its table the worker's way: the like-for-like reference.

:mod:`bench.faust_pattern_agent` is the fixed reference of the worker's cost issues: Faust's own
consumer, and its table written through Faust (``table[key] = value``: a changelog message, a
future and a callback per write). The worker does neither: its consumer hands messages on without
a task per message (:class:`stream_app.faust_adapter.EagerConsumer`), and it puts each state into
the table's store and sends the changelog records itself, one record batch per partition on its own
producer, delivered after the batch's outputs (:meth:`stream_app.batch.BatchHandler._write_states`).
This agent is that pattern with those two differences, through the same pieces
(:meth:`~stream_app.faust_adapter.TableAccess.put`,
:meth:`~stream_app.sender.BatchSender.send_placed`, :meth:`~stream_app.faust_adapter.TableAccess.persisted`),
so that the worker's CPU per bar against it is what the model, validation and metrics cost.
Everything else (settings, batches, outputs, the start-up task) is the reference's, from
:mod:`bench.faust_pattern`. Started by ``bench/worker_bench.py`` as
``faust -A bench.faust_pattern_own_changelog worker -l warn``.
"""

from __future__ import annotations

import faust

from bench.faust_pattern import batches, keyed, pattern_app

settings, app, bars, last_bar = pattern_app("pattern-own-changelog", eager_consumer=True)


@app.agent(bars)
async def echo(stream: faust.StreamT) -> None:
    changelog = last_bar.changelog_topic.get_topic_name()
    async with batches(settings, app, stream) as (taken, sender, tables):
        async for events in taken:
            keyed_bars = keyed(events)
            await sender.send([(settings.topic_predictions, key, value) for key, value, _ in keyed_bars])
            # As the worker writes its states: each key's last value into the store under the key's
            # last event, its changelog record to that event's partition, delivered, then noted.
            records = []
            for key, (value, event) in {key: (value, e) for key, value, e in keyed_bars}.items():
                tables.put(last_bar, key, value, event)
                records.append((changelog, event.message.partition, key, value))
            offsets = await sender.send_placed(records)
            tables.persisted(last_bar, {partition: offset for (_, partition), offset in offsets.items()})
