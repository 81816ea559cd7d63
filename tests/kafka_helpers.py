"""Reading topics to the end in tests, without sleeping: the end offsets say when we are done."""

from __future__ import annotations

import time
from typing import Any

import orjson
from kafka import KafkaConsumer

from forecaster.kafka.client import kafka_python_options
from forecaster.kafka.topics import topic_partitions
from forecaster.settings import Settings


def read_topic(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every message now in ``topic`` as ``(partition, offset, key, decoded JSON or raw bytes)``.

    Reads from the beginning up to the end offsets taken at the call, so the result is exact.
    """
    consumer = KafkaConsumer(**kafka_python_options(settings), enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout_s
        partitions = topic_partitions(consumer, topic, timeout_s)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[Any] = []
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} to its end took over {timeout_s} s")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                for m in batch:
                    if m.offset >= end[tp]:
                        continue
                    try:
                        value = orjson.loads(m.value)
                    except orjson.JSONDecodeError:
                        value = m.value
                    key = m.key.decode() if m.key is not None else None
                    records.append((tp.partition, m.offset, key, value))
        return records
    finally:
        consumer.close()


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
