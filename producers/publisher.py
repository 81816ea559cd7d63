"""A kafka-python producer tuned for replaying bars, which accounts for every record it sends.

Durable: ``acks=all`` with idempotence, so a retry never duplicates or reorders a ticker's bars.
Fast: large batches, a short linger and lz4 compression; the partition of each key is computed
once per ticker (:class:`KeyCachedPartitioner`) since kafka-python's murmur2 is pure Python.
Honest: a broker that cannot be reached fails within ``connect_timeout_s`` before anything is sent,
and every delivery outcome is counted (:attr:`Publisher.deliveries`), never dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from kafka.partitioner.default import DefaultPartitioner

from forecaster.kafka.client import kafka_python_client, kafka_python_options
from forecaster.kafka.partitioning import key_partition
from forecaster.settings import Settings, env_name
from models.core.bar import Bar

#: Producer options on top of the connection and security settings; see docs/benchmarks.md.
PRODUCER_TUNING: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "compression_type": "lz4",
    "batch_size": 256 * 1024,
    "linger_ms": 20,
    "max_in_flight_requests_per_connection": 5,
    "request_timeout_ms": 15_000,
}
#: The shortest delivery timeout: a request's own timeout plus a linger (Kafka's rule).
MIN_DELIVERY_TIMEOUT_S = 16.0

log = logging.getLogger(__name__)


def error_text(error: BaseException) -> str:
    """``"KafkaTimeoutError: ..."`` once: kafka-python's messages already start with their class name.

    >>> error_text(ValueError("bad")), error_text(KafkaTimeoutError("slow"))
    ('ValueError: bad', 'KafkaTimeoutError: slow')
    """
    text = str(error)
    name = type(error).__name__
    return text if text.startswith(name) else f"{name}: {text}"


class BrokerUnreachable(RuntimeError):
    """The broker did not answer in time; nothing was sent."""


class KeyCachedPartitioner(DefaultPartitioner):
    """kafka-python's default partitioner (murmur2 of the key, as the Java client), memoised per key
    (:func:`forecaster.kafka.partitioning.key_partition`): each ticker is hashed once, not per bar.
    """

    def partition(self, topic: str, key: Any, serialized_key: bytes | None, value: Any,
                  serialized_value: bytes | None, cluster: Any) -> int:
        if serialized_key is None:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        return key_partition(serialized_key, len(cluster.partitions_for_topic(topic)))


@dataclass
class Deliveries:
    """Records sent to one topic, and how many the broker acknowledged or refused so far."""

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    first_error: str | None = field(default=None)

    def outcome(self, value: Any) -> None:
        """Delivery callback: the record's metadata, or the exception that failed it."""
        if isinstance(value, BaseException):
            self.failed += 1
            if self.first_error is None:
                self.first_error = error_text(value)
        else:
            self.delivered += 1


class Publisher:
    """Sends keyed JSON records and keeps :class:`Deliveries` per topic.

    Parameters
    ----------
    settings
        Connection and security settings (``kafka_python_options``).
    connect_timeout_s
        Longest wait for the broker to answer, and for a topic's metadata or buffer space.
    linger_ms
        How long a record may wait for others to share its request (default: the tuning's 20 ms).

    A record not acknowledged within ``settings.replay_delivery_timeout_s`` (retries included)
    fails its future instead of blocking the replay; the default rides out a broker restart.
    """

    def __init__(self, settings: Settings, *, connect_timeout_s: float = 10.0,
                 linger_ms: int | None = None) -> None:
        self.bootstrap = settings.bootstrap
        self.deliveries: dict[str, Deliveries] = {}
        self._keys: dict[str, bytes] = {}  # ticker -> its encoded key, encoded once
        timeout_ms = int(connect_timeout_s * 1000)
        delivery_s = settings.replay_delivery_timeout_s
        if delivery_s < MIN_DELIVERY_TIMEOUT_S:
            raise ValueError(f"{env_name('replay_delivery_timeout_s')}={delivery_s:g} is below the request "
                             f"timeout; use at least {MIN_DELIVERY_TIMEOUT_S:g}")
        # Past the delivery timeout every record's future has completed one way or the other.
        self.flush_timeout_s = delivery_s + 5
        tuning = {**PRODUCER_TUNING, "delivery_timeout_ms": int(delivery_s * 1000)}
        if linger_ms is not None:
            tuning["linger_ms"] = linger_ms
        try:
            self._producer = kafka_python_client(
                KafkaProducer, **kafka_python_options(settings), **tuning, partitioner=KeyCachedPartitioner(),
                bootstrap_timeout_ms=timeout_ms, max_block_ms=timeout_ms,
            )
        except (KafkaTimeoutError, KafkaConnectionError) as exc:
            raise BrokerUnreachable(
                f"cannot reach Kafka at {settings.bootstrap} within {connect_timeout_s:g} s ({exc}); "
                "nothing was sent"
            ) from exc

    def send(self, topic: str, key: bytes | None, value: bytes) -> Any:
        """Queue one record and return its future; its outcome is also counted in :attr:`deliveries`.

        A record that cannot even be queued (no metadata or buffer space within the connect
        timeout, record too large) raises here.
        """
        counts = self.deliveries.get(topic)
        if counts is None:
            counts = self.deliveries[topic] = Deliveries()
        future = self._producer.send(topic, key=key, value=value)
        counts.sent += 1
        future.add_both(counts.outcome)
        return future

    def send_bar(self, topic: str, bar: Bar) -> Any:
        """:meth:`send` a bar as the JSON of ``schemas/bar.schema.json``, keyed by its ticker."""
        key = self._keys.get(bar.ticker)
        if key is None:
            key = self._keys[bar.ticker] = bar.ticker.encode()
        return self.send(topic, key, orjson.dumps(bar))

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued record is acknowledged or has failed (raises ``KafkaError`` if not);
        ``timeout_s`` defaults to the delivery timeout and a margin."""
        self._producer.flush(timeout=self.flush_timeout_s if timeout_s is None else timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        """Flush and disconnect, waiting at most ``timeout_s`` (as :meth:`flush`); never raises.

        When kafka-python cannot complete its flush (records still unacknowledged at the timeout,
        or a batch it split after MESSAGE_TOO_LARGE), those records are simply not counted as
        delivered, which the replay reports; the producer's daemon sender thread is left to end.
        """
        try:
            self._producer.close(timeout=self.flush_timeout_s if timeout_s is None else timeout_s)
        except KafkaError as exc:
            log.warning("the Kafka producer did not close cleanly: %s", exc)
