"""The memoised partitioner maps every key exactly as kafka-python's (and the Java client's) murmur2."""

from __future__ import annotations

import pytest
from kafka.partitioner.default import DefaultPartitioner

from forecaster.settings import Settings
from producers.publisher import KeyCachedPartitioner, Publisher


class Cluster:
    """The two questions a partitioner asks of the cluster metadata."""

    def __init__(self, partitions: dict[str, int]) -> None:
        self._partitions = partitions

    def topics(self) -> set[str]:
        return set(self._partitions)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self._partitions[topic]))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions_for_topic(topic)


def test_cached_partitions_equal_the_default_ones_per_topic_and_count() -> None:
    cached, default = KeyCachedPartitioner(), DefaultPartitioner()
    tickers = ["AAPL", "MSFT", "601988.SH", "VGI", "A", "ZTS", "GOOG", "IBM"]
    # The second round is answered from the cache; the third after the bars topic grew.
    for cluster in (Cluster({"bars": 8, "bars.dlq": 3}), Cluster({"bars": 8, "bars.dlq": 3}),
                    Cluster({"bars": 12, "bars.dlq": 3})):
        for ticker in tickers:
            key = ticker.encode()
            for topic in ("bars", "bars.dlq"):
                assert (cached.partition(topic, ticker, key, None, None, cluster)
                        == default.partition(topic, ticker, key, None, None, cluster))


def test_a_delivery_timeout_below_the_request_timeout_is_refused_before_connecting() -> None:
    # Nothing listens on port 9: the check comes before any connection attempt.
    settings = Settings(bootstrap="127.0.0.1:9", replay_delivery_timeout_s=5)
    with pytest.raises(ValueError, match=r"^FORECASTER_REPLAY_DELIVERY_TIMEOUT_S=5 is below the request "
                                         r"timeout; use at least 16$"):
        Publisher(settings)
