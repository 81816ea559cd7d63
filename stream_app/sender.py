"""The worker's outputs (predictions, scores, dead letters), one Kafka batch per partition.

Faust's ``producer.send`` costs a coroutine, a partitioner call and a future per record, and every
future is resolved one by one when its request is answered: 15 % of the worker's thread under load
(docs/benchmarks.md). The worker knows a batch's records at once, so it builds aiokafka's record
batches itself (``create_batch`` / ``send_batch``, aiokafka's public API) on a producer of its own:
one future per partition per batch. Keys land on the partitions Kafka's default partitioner gives
them (:func:`~forecaster.kafka.partitioning.key_partition`, as every other producer), so a
ticker's records stay in one partition in order, each score before the prediction that follows it;
records without a key go to a random partition.

The producer is separate from Faust's, which keeps writing the positions table's changelog. The
worker awaits the delivery of a batch's outputs before it sends the states' changelog records on
this producer (:meth:`BatchSender.send_placed`), and their delivery before it writes the
positions, so Faust's commit (after flushing its own producer) never covers a bar whose outputs or
state are not in Kafka.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from forecaster.kafka.partitioning import key_partition

#: Largest record batch built, bytes: below the broker's default ``message.max.bytes`` (1 MiB).
MAX_BATCH_BYTES = 512 * 1024


class BatchSender:
    """Sends records grouped in one record batch per partition and waits for their delivery.

    Parameters
    ----------
    producer
        A started :class:`aiokafka.AIOKafkaProducer` (no serializers: keys and values are bytes).
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, records: Iterable[tuple[str, bytes | None, bytes]]) -> None:
        """Send ``(topic, key, value)`` records; returns once the broker has them all.

        Records of one partition are sent in the order given. Raises what the producer raises when
        a batch cannot be delivered (its retries exhausted).
        """
        counts: dict[str, int] = {}  # partitions per topic, now (they can be added to while we run)
        placed = []
        for topic, key, value in records:
            if topic not in counts:
                counts[topic] = len(await self.producer.partitions_for(topic))
            partition = random.randrange(counts[topic]) if key is None else key_partition(key, counts[topic])
            placed.append((topic, partition, key, value))
        await self.send_placed(placed)

    async def send_placed(self, records: Iterable[tuple[str, int, bytes | None, bytes]]
                          ) -> dict[tuple[str, int], int]:
        """Send ``(topic, partition, key, value)`` records to the partitions given, as :meth:`send`
        does; returns the offset of the last record of each ``(topic, partition)``."""
        builders: dict[tuple[str, int], list[Any]] = {}
        for topic, partition, key, value in records:
            chain = builders.setdefault((topic, partition), [self.producer.create_batch()])
            if chain[-1].append(timestamp=None, key=key, value=value) is None:
                # Full: the record starts the next batch (an empty one takes a record of any size;
                # the broker judges it against its message.max.bytes).
                chain.append(self.producer.create_batch())
                chain[-1].append(timestamp=None, key=key, value=value)
        deliveries, counts = [], []
        for (topic, partition), chain in builders.items():
            for builder in chain:
                deliveries.append(await self.producer.send_batch(builder, topic, partition=partition))
                counts.append(builder.record_count())
        last: dict[tuple[str, int], int] = {}
        for metadata, count in zip(await asyncio.gather(*deliveries), counts, strict=True):
            # A batch's delivery tells its first offset; a partition's later batches come after.
            last[(metadata.topic, metadata.partition)] = metadata.offset + count - 1
        return last


def output_producer(options: dict[str, Any], compression: str | None,
                    request_timeout_s: float) -> AIOKafkaProducer:
    """The producer of a worker's outputs, configured as Faust's own: acks from all replicas, and
    ``request_timeout_s`` (Faust's ``producer_request_timeout``), how long a batch is retried
    while the broker is away before the worker gives up on it and exits."""
    return AIOKafkaProducer(**options, acks="all", compression_type=compression,
                            max_batch_size=MAX_BATCH_BYTES, linger_ms=0,
                            request_timeout_ms=int(request_timeout_s * 1000))
