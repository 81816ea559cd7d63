"""The memoised partitioner maps every key exactly as kafka-python's (and the Java client's) murmur2."""

from __future__ import annotations

from kafka.partitioner.default import DefaultPartitioner

from producers.publisher import KeyCachedPartitioner


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
