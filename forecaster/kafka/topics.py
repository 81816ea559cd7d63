"""The application's topics, created idempotently with the configured partition count."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from forecaster.kafka.client import kafka_python_client, kafka_python_options
from forecaster.settings import Settings

# kafka-python (slow to import) loads inside the functions that talk to the broker.


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


def app_topics(settings: Settings) -> list[TopicSpec]:
    """``bars``, ``bars.dlq``, ``predictions`` and ``predictions.shadow`` as the settings name them.

    Bars and predictions (the challengers' too) share the partition count so that a ticker's bars
    and predictions go to the same partition number; the dead-letter topic is kept forever, since
    it is the record of what was rejected.
    """
    n, rf = settings.partitions, settings.replication_factor
    return [
        TopicSpec(settings.topic_bars, n, rf, {}),
        TopicSpec(settings.topic_predictions, n, rf, {}),
        TopicSpec(settings.topic_shadow, n, rf, {}),
        TopicSpec(settings.topic_dlq, n, rf, {"retention.ms": "-1"}),
    ]


def create_topics(settings: Settings, specs: list[TopicSpec] | None = None, *,
                  connect_timeout_s: float = 30.0) -> dict[str, str]:
    """Create the topics that do not exist yet; returns ``{name: "created" | "exists"}``.

    An existing topic with fewer partitions than asked is reported, not changed: growing the
    partition count moves tickers between partitions, which a running system must not do silently.
    A broker that does not answer within ``connect_timeout_s`` raises kafka-python's
    ``KafkaTimeoutError``.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    specs = app_topics(settings) if specs is None else specs
    admin = kafka_python_client(KafkaAdminClient, **kafka_python_options(settings),
                                bootstrap_timeout_ms=int(connect_timeout_s * 1000))
    try:
        existing = set(admin.list_topics())
        outcome: dict[str, str] = {}
        for spec in specs:
            if spec.name in existing:
                outcome[spec.name] = "exists"
                continue
            try:
                admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, spec.replication_factor,
                              topic_configs=spec.configs)]
                )
                outcome[spec.name] = "created"
            except TopicAlreadyExistsError:  # made by someone else in between
                outcome[spec.name] = "exists"
        _await_metadata(admin, [name for name, how in outcome.items() if how == "created"])
        return outcome
    finally:
        admin.close()


def _await_metadata(admin: Any, names: list[str], timeout_s: float = 30.0) -> None:
    """Return once the broker's metadata shows every topic of ``names`` with its partitions.

    A topic is created before the broker's metadata lists it; a client asking in between (Faust
    joining its group right after the worker made its changelogs) sees no partitions.
    """
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    while names:
        try:
            if all(t["partitions"] and not t["error_code"] for t in admin.describe_topics(names)):
                return
        except KafkaError:  # e.g. UnknownTopicOrPartitionError while the metadata catches up
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {', '.join(names)} were created but the broker's metadata did not "
                               f"list them within {timeout_s:g} s")
        time.sleep(0.1)


def topic_partitions(consumer: Any, topic: str, timeout_s: float) -> list[Any]:
    """The ``TopicPartition`` s of an existing ``topic``, as a kafka-python ``consumer`` learns them.

    kafka-python answers no partitions while its metadata request has not come back (on a loaded
    machine it can time out), so this asks again until ``timeout_s``; :class:`TimeoutError` then.
    """
    from kafka import TopicPartition

    deadline = time.monotonic() + timeout_s
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no partitions of {topic} known after {timeout_s} s: is it created?")
        time.sleep(0.2)
