"""Reading a whole topic as it stands: every partition from its start to its end offset at the call.

The end offsets are taken once, before reading, so the result is exact and the read ends even while
producers go on writing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from forecaster.kafka.client import kafka_python_client, kafka_python_options
from forecaster.kafka.topics import topic_partitions
from forecaster.settings import Settings

# kafka-python (slow to import) loads inside the function that talks to the broker.


def read_to_end(settings: Settings, topic: str, timeout_s: float = 60.0,
                clock: Callable[[], float] = time.monotonic
                ) -> Iterator[tuple[int, int, bytes | None, bytes | None]]:
    """``(partition, offset, key, value)`` of every message now in ``topic``, partitions interleaved.

    A long topic takes as long as it takes: ``timeout_s`` bounds how long the broker may send nothing
    (``clock`` measures it), not the whole read, which grows with the topic (a worker's predictions
    topic holds two records a bar).

    Raises :class:`TimeoutError` when the topic is unknown, or the broker sends nothing for ``timeout_s``.
    """
    from kafka import KafkaConsumer

    consumer = kafka_python_client(KafkaConsumer, **kafka_python_options(settings), enable_auto_commit=False,
                                   bootstrap_timeout_ms=int(timeout_s * 1000))
    try:
        partitions = topic_partitions(consumer, topic, timeout_s)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        silent = 0.0  # seconds the polls came back empty in a row
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if silent > timeout_s:
                raise TimeoutError(f"reading {topic} to its end: the broker sent nothing for {timeout_s:g} s")
            asked = clock()
            batches = consumer.poll(timeout_ms=500)
            silent = 0.0 if batches else silent + clock() - asked
            for tp, batch in batches.items():
                for message in batch:
                    if message.offset < end[tp]:
                        yield tp.partition, message.offset, message.key, message.value
    finally:
        consumer.close()


def first_stored_offset(settings: Settings, topic: str, partition: int, offset: int,
                        timeout_s: float = 10.0) -> int:
    """The offset of the first message stored in ``topic``'s ``partition`` at or after ``offset``, or
    the partition's end offset when there is none.

    Read as the worker's consumer reads (uncommitted isolation: transaction markers are the only
    offsets without a message). Raises :class:`TimeoutError` past ``timeout_s``, and kafka-python's
    errors when the broker refuses.
    """
    from kafka import KafkaConsumer, TopicPartition

    tp = TopicPartition(topic, partition)
    # An offset below the log start (retention) reads from the log start: its first message.
    consumer = kafka_python_client(KafkaConsumer, **kafka_python_options(settings), enable_auto_commit=False,
                                   auto_offset_reset="earliest", isolation_level="read_uncommitted",
                                   max_poll_records=1, bootstrap_timeout_ms=int(timeout_s * 1000))
    try:
        deadline = time.monotonic() + timeout_s
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        consumer.seek(tp, offset)
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} partition {partition} from {offset} took over "
                                   f"{timeout_s:g} s")
            for message in consumer.poll(timeout_ms=500).get(tp, []):
                return int(message.offset)
        return int(end)
    finally:
        consumer.close()
