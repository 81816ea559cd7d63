"""What a client of its own reads of a topic on the real broker: the first offset holding a message,
past transaction markers (the check behind the position guard's passed gaps), and a whole topic
however long reading it takes."""

from __future__ import annotations

import pytest
from kafka import KafkaProducer

from forecaster.kafka.client import kafka_python_options
from forecaster.kafka.reading import first_stored_offset, read_to_end
from forecaster.kafka.topics import TopicSpec, create_topics
from forecaster.settings import Settings

pytestmark = pytest.mark.kafka


def test_the_first_stored_offset_skips_transaction_markers(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic_bars
    create_topics(kafka_settings, [TopicSpec(topic, 1, 1, {})])
    producer = KafkaProducer(**kafka_python_options(kafka_settings), transactional_id=f"{topic}-tx")
    producer.init_transactions()
    for values in ([b"a", b"b"], [b"c"]):  # offsets 0, 1, a marker at 2; 3, a marker at 4
        producer.begin_transaction()
        for value in values:
            producer.send(topic, value=value, partition=0)
        producer.commit_transaction()
    producer.close()
    found = [first_stored_offset(kafka_settings, topic, 0, offset) for offset in range(6)]
    assert found == [0, 1, 3, 3, 5, 5]


def test_a_topic_is_read_to_its_end_however_long_its_reader_takes(kafka_settings: Settings) -> None:
    # The limit was on the whole read: `promote --from-shadow` failed on a predictions topic that
    # took over a minute to read. It bounds the broker's silence now; the reader here takes a
    # (counted) second a message, far past it.
    topic = kafka_settings.topic_predictions
    create_topics(kafka_settings, [TopicSpec(topic, 2, 1, {})])
    producer = KafkaProducer(**kafka_python_options(kafka_settings))
    for k in range(1200):
        producer.send(topic, value=b"%d" % k, partition=k % 2)
    producer.flush()
    producer.close()
    now = [0.0]
    values = []
    for _, _, _, value in read_to_end(kafka_settings, topic, timeout_s=5, clock=lambda: now[0]):
        values.append(value)
        now[0] += 1.0
    assert sorted(values) == sorted(b"%d" % k for k in range(1200))
