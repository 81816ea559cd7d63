"""Asking kafka-python for a topic's partitions, which it answers only once its metadata came."""

from __future__ import annotations

import pytest

from forecaster.kafka.topics import topic_partitions


class _SlowMetadata:
    """A consumer whose metadata arrives on the third question, as on a loaded machine."""

    def __init__(self, answers: list[set[int] | None]) -> None:
        self.answers = answers

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.answers.pop(0) if self.answers else None


def test_topic_partitions_asks_again_until_the_metadata_comes() -> None:
    consumer = _SlowMetadata([None, set(), {2, 0, 1}])
    assert [(tp.topic, tp.partition) for tp in topic_partitions(consumer, "bars", timeout_s=30)] == [
        ("bars", 0), ("bars", 1), ("bars", 2)]


def test_topic_partitions_of_a_topic_that_never_shows_is_a_timeout() -> None:
    with pytest.raises(TimeoutError, match=r"no partitions of nope known after 0\.1 s"):
        topic_partitions(_SlowMetadata([]), "nope", timeout_s=0.1)
