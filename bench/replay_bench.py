"""Replay throughput: the 619k-row S&P 500 file through ``producers.replay`` into a real broker,
with one producer process and with the default (one per CPU).

In the same run, for scale: the same bars (same JSON bytes, same keys) through an untuned
kafka-python producer loop, and through a plain confluent-kafka (librdkafka) loop with the same
durability (acks=all, idempotence) as the ceiling. Each goes to a fresh topic with the same
partition count. Not a test: results go in docs/benchmarks.md with the machine and the command.

    .venv/bin/python -m bench.replay_bench                      # starts a throw-away local broker
    .venv/bin/python -m bench.replay_bench --bootstrap HOST:PORT

confluent-kafka comes from the ``bench`` extra (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import orjson

from bench.data import sp500_file
from forecaster import settings as settings_module
from forecaster.kafka.broker import LocalBroker, free_port
from forecaster.kafka.topics import TopicSpec, create_topics
from forecaster.settings import Settings
from producers.publisher import PRODUCER_TUNING
from producers.readers import read_csv_bars
from producers.replay import replay

Records = list[tuple[bytes, bytes]]
T = TypeVar("T")


def _cpu() -> float:
    # This process (every thread: the clients' senders, librdkafka's) and its finished children
    # (the replay's producer processes).
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _timed(label: str, count: int, run: Callable[[], T]) -> tuple[dict[str, float | str], T]:
    """Run once; wall-clock rate, and CPU time per record, which is steadier than wall time on a
    shared machine."""
    wall, cpu = time.perf_counter(), _cpu()
    value = run()
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    print(f"{label:<40} {count:>9,} in {wall:6.2f} s = {count / wall:>9,.0f} /s   "
          f"CPU {cpu / count * 1e6:5.1f} us/record", flush=True)
    return {"run": label, "records": count, "seconds": round(wall, 3), "per_s": round(count / wall),
            "cpu_us_per_record": round(cpu / count * 1e6, 2)}, value


def kafka_python_untuned(settings: Settings, topic: str, records: Records) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.bootstrap)
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def _confluent_loop(config: dict[str, object], topic: str, records: Records) -> None:
    from confluent_kafka import Producer

    failures: list[object] = []

    def delivered(error: object, _message: object) -> None:
        if error is not None:
            failures.append(error)

    producer = Producer(config)
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(60)
    if left or failures:
        raise RuntimeError(f"confluent-kafka: {left} undelivered, {len(failures)} failed: {failures[:3]}")


def confluent_plain(settings: Settings, topic: str, records: Records) -> None:
    """librdkafka's defaults, with the replay's durability (acks=all, idempotence)."""
    _confluent_loop({"bootstrap.servers": settings.bootstrap, "acks": "all", "enable.idempotence": True},
                    topic, records)


def confluent_tuned(settings: Settings, topic: str, records: Records) -> None:
    """The replay's batching and compression settings, in librdkafka."""
    _confluent_loop({
        "bootstrap.servers": settings.bootstrap, "acks": "all", "enable.idempotence": True,
        "compression.type": PRODUCER_TUNING["compression_type"], "linger.ms": PRODUCER_TUNING["linger_ms"],
        "batch.size": PRODUCER_TUNING["batch_size"],
    }, topic, records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=None, help="broker to use (default: start a local one)")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--processes", type=int, nargs="*", default=[],
                        help="producer process counts to measure besides one and the default")
    parser.add_argument("--skip-untuned", action="store_true", help="leave out the untuned kafka-python run")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    base = settings_module.load()
    path = sp500_file()
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = LocalBroker(Path(tempfile.mkdtemp(prefix="replay-bench-")))
        bootstrap = broker.start(port=free_port()).bootstrap
    try:
        run_id = uuid.uuid4().hex[:8]
        settings = base.replace(bootstrap=bootstrap, partitions=args.partitions,
                                topic_bars=f"bench-bars-{run_id}", topic_dlq=f"bench-dlq-{run_id}")
        print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, Python {platform.python_version()}; broker {bootstrap}")
        read, result = _timed("read + validate (read_csv_bars, rows)", 619_040, lambda: read_csv_bars([path]))
        count = len(result.bars)
        if result.rows_read != read["records"]:
            raise RuntimeError(f"{path} has {result.rows_read} rows, not the 619,040 of the S&P 500 file")
        results = [read]
        # One producer process, any counts asked for, then the default: one per CPU.
        runs = [(1, "producers.replay, one process"),
                *((n, f"producers.replay, {n} processes") for n in args.processes),
                (None, f"producers.replay, {os.cpu_count() or 1} processes (default)")]
        for processes, label in runs:
            topics = settings.replace(topic_bars=f"bench-bars-{processes}-{run_id}")
            replayed, summary = _timed(label, count,
                                       partial(replay, result, topics, progress=False, processes=processes))
            if not (summary.accounted and summary.bars_sent == count):
                raise RuntimeError(f"the replay lost rows: {summary}")
            results.append(replayed)
        records = [(bar.ticker.encode(), orjson.dumps(bar)) for bar in result.bars]
        loops = [("confluent-kafka plain loop (ceiling)", confluent_plain),
                 ("confluent-kafka tuned loop", confluent_tuned)]
        if not args.skip_untuned:
            loops.insert(0, ("kafka-python untuned loop", kafka_python_untuned))
        for label, loop in loops:
            topic = f"bench-{loop.__name__}-{run_id}"
            create_topics(settings, [TopicSpec(topic, args.partitions, 1, {})])
            results.append(_timed(label, count, partial(loop, settings, topic, records))[0])
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
