"""The application's topics, created idempotently with the configured partition count."""

from __future__ import annotations

from dataclasses import dataclass

from forecaster.kafka.client import kafka_python_options
from forecaster.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


def app_topics(settings: Settings) -> list[TopicSpec]:
    """``bars``, ``bars.dlq`` and ``predictions`` as the settings name them.

    Bars and predictions share the partition count so that a ticker's bars and predictions go
    to the same partition number; the dead-letter topic is kept forever, since it is the record
    of what was rejected.
    """
    n, rf = settings.partitions, settings.replication_factor
    return [
        TopicSpec(settings.topic_bars, n, rf, {}),
        TopicSpec(settings.topic_predictions, n, rf, {}),
        TopicSpec(settings.topic_dlq, n, rf, {"retention.ms": "-1"}),
    ]


def create_topics(settings: Settings, specs: list[TopicSpec] | None = None) -> dict[str, str]:
    """Create the topics that do not exist yet; returns ``{name: "created" | "exists"}``.

    An existing topic with fewer partitions than asked is reported, not changed: growing the
    partition count moves tickers between partitions, which a running system must not do silently.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    specs = app_topics(settings) if specs is None else specs
    admin = KafkaAdminClient(**kafka_python_options(settings))
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
        return outcome
    finally:
        admin.close()
