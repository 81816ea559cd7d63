"""Kafka's default partition of a key, computed once per key for every producer of the system.

Kafka's clients (Java, kafka-python, aiokafka) put a keyed record on ``murmur2(key) % partitions``.
murmur2 is pure Python in the Python clients, and a replay or a worker meets the same few hundred
tickers over and over: the mapping is memoised here, shared by the replay's producer
(:class:`producers.publisher.KeyCachedPartitioner`) and the worker's (:mod:`stream_app.sender`).

>>> key_partition(b"AAPL", 8), key_partition(b"IBM", 8)
(1, 3)
"""

from __future__ import annotations

from functools import lru_cache

from kafka.partitioner.default import murmur2

#: Distinct (key, partition count) pairs remembered: far more than there are tickers.
CACHE_SIZE = 1 << 16


@lru_cache(maxsize=CACHE_SIZE)
def key_partition(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` under Kafka's default partitioner."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
