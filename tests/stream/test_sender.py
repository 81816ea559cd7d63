"""The worker's batch sender on the real broker: Kafka's partitions for each key, order kept."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka.partitioner import murmur2

from forecaster.kafka.client import aiokafka_options
from forecaster.settings import COMPRESSIONS, Settings
from stream_app.app import compression_type
from stream_app.sender import MAX_BATCH_BYTES, BatchSender, output_producer
from tests.kafka_helpers import read_topic


def send(settings: Settings, records: list[tuple[str, bytes | None, bytes]],
         compression: str | None = None) -> None:
    async def run() -> None:
        producer = output_producer(aiokafka_options(settings), compression, 60.0)
        await producer.start()
        try:
            await BatchSender(producer).send(records)
        finally:
            await producer.stop()

    asyncio.run(run())


def test_each_key_lands_on_kafkas_default_partition_in_order(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic_predictions  # 4 partitions
    keys = [f"T{i}".encode() for i in range(40)]
    records = [(topic, key, f"{key.decode()}-{n}".encode()) for n in range(5) for key in keys]
    send(kafka_settings, records)

    got = read_topic(kafka_settings, topic)
    assert len(got) == len(records)
    for key in keys:
        mine = sorted((offset, partition, value) for partition, offset, k, value in got if k == key.decode())
        # The Java client's and kafka-python's choice, so every producer of a ticker agrees.
        assert {partition for _, partition, _ in mine} == {(murmur2(key) & 0x7FFFFFFF) % 4}
        assert [value for _, _, value in mine] == [f"{key.decode()}-{n}".encode() for n in range(5)]


def test_a_partitions_records_beyond_one_batch_all_arrive_in_order(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic_dlq
    big = MAX_BATCH_BYTES // 3
    records = [(topic, b"AAPL", bytes([65 + n]) * big) for n in range(7)]  # at least three batches
    send(kafka_settings, [*records, (topic, None, b"no key")])

    got = read_topic(kafka_settings, topic)
    keyed = [value for _, offset, key, value in sorted(got, key=lambda r: r[1]) if key == "AAPL"]
    assert [value[:1] for value in keyed] == [bytes([65 + n]) for n in range(7)]
    assert [value for _, _, key, value in got if key is None] == [b"no key"]


@pytest.mark.parametrize("name", COMPRESSIONS)
def test_every_codec_the_worker_offers_is_read_back_by_kafka_python(kafka_settings: Settings,
                                                                     name: str) -> None:
    # What the worker writes, `forecaster tail`, the API, the demo and the README's snippet read
    # with kafka-python, which decodes snappy and zstd only with their own libraries installed.
    topic = kafka_settings.topic_predictions
    records = [(topic, f"T{i}".encode(), orjson.dumps({"ticker": f"T{i}", "n": i})) for i in range(50)]
    send(kafka_settings, records, compression_type(name))
    got = read_topic(kafka_settings, topic)
    assert sorted(value["n"] for *_, value in got) == list(range(50))


def test_records_placed_on_given_partitions_arrive_there_and_their_last_offsets_are_told(
        kafka_settings: Settings) -> None:
    # The states' changelog goes to the partition of each key's source event, whatever its key hashes to.
    topic = kafka_settings.topic_predictions  # 4 partitions
    records = [(topic, 3, b"AAPL", b"a0"), (topic, 3, b"MSFT", b"m0"), (topic, 0, b"AAPL", b"a1")]

    async def run() -> dict[tuple[str, int], int]:
        producer = output_producer(aiokafka_options(kafka_settings), None, 60.0)
        await producer.start()
        try:
            return await BatchSender(producer).send_placed(records)
        finally:
            await producer.stop()

    last = asyncio.run(run())
    got = read_topic(kafka_settings, topic)
    assert sorted((partition, offset, value) for partition, offset, _, value in got) == [
        (0, 0, b"a1"), (3, 0, b"a0"), (3, 1, b"m0")]
    assert last == {(topic, 3): 1, (topic, 0): 0}
