"""Reading topics to the end in tests, without sleeping: the end offsets say when we are done."""

from __future__ import annotations

import time
from typing import Any

import orjson
from kafka import KafkaConsumer

from forecaster.kafka.client import kafka_python_options
from forecaster.kafka.reading import read_to_end
from forecaster.kafka.topics import topic_partitions
from forecaster.settings import Settings


def read_topic(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every message now in ``topic`` as ``(partition, offset, key, decoded JSON or raw bytes)``.

    Reads from the beginning up to the end offsets taken at the call, so the result is exact.
    """
    records: list[Any] = []
    for partition, offset, key, raw in read_to_end(settings, topic, timeout_s):
        try:
            value = orjson.loads(raw) if raw is not None else None
        except orjson.JSONDecodeError:
            value = raw
        records.append((partition, offset, key.decode() if key is not None else None, value))
    return records


def wait_for_count(settings: Settings, topic: str, count: int, timeout_s: float = 120.0) -> int:
    """Poll the end offsets of ``topic`` until they add up to at least ``count`` messages."""
    consumer = KafkaConsumer(**kafka_python_options(settings))
    try:
        deadline = time.monotonic() + timeout_s
        partitions = topic_partitions(consumer, topic, timeout_s)
        while True:
            total = sum(consumer.end_offsets(partitions).values())
            if total >= count:
                return total
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} holds {total} messages, not {count}, after {timeout_s} s")
            time.sleep(0.2)
    finally:
        consumer.close()
