"""The local broker is a real, durable Apache Kafka: produce, consume, restart, read again."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError

from forecaster.kafka.broker import BrokerError, LocalBroker, broker_answers, free_port
from forecaster.kafka.client import kafka_python_client
from forecaster.kafka.topics import create_topics
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.kafka


def test_messages_survive_a_broker_restart(tmp_path: Path) -> None:
    from forecaster.settings import Settings

    broker = LocalBroker(tmp_path / "kafka")
    port = free_port()
    info = broker.start(port=port)
    try:
        settings = Settings(bootstrap=info.bootstrap, partitions=3)
        assert create_topics(settings) == {"bars": "created", "predictions": "created",
                                           "predictions.shadow": "created", "bars.dlq": "created"}
        producer = KafkaProducer(bootstrap_servers=info.bootstrap, acks="all")
        for i in range(30):
            producer.send("bars", key=f"T{i % 3}".encode(), value=b'{"i": %d}' % i)
        producer.flush()
        producer.close()

        assert broker.stop() is True
        assert not broker.running()
        assert not broker_answers(info.bootstrap, timeout_s=1.0)

        again = broker.start(port=port)
        assert again.pid != info.pid
        assert create_topics(settings)["bars"] == "exists"
        records = read_topic(settings, "bars")
        assert sorted(value["i"] for *_, value in records) == list(range(30))
        # Keyed records: one ticker, one partition.
        partitions_by_key: dict[str, set[int]] = {}
        for partition, _offset, key, _value in records:
            partitions_by_key.setdefault(key, set()).add(partition)
        assert all(len(p) == 1 for p in partitions_by_key.values())
    finally:
        broker.stop()


def test_start_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} is already in use"):
            LocalBroker(tmp_path / "kafka").start(port=port)


def test_missing_java_says_what_to_install(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "FORECASTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "forecaster.cli", "kafka", "start", "--port", str(free_port())],
        env=env, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "`java` was not found" in result.stderr
    assert "openjdk-17" in result.stderr


def test_status_and_stop_of_a_broker_that_never_ran(tmp_path: Path) -> None:
    env = {**os.environ, "FORECASTER_HOME": str(tmp_path)}
    run = [sys.executable, "-m", "forecaster.cli", "kafka"]
    status = subprocess.run([*run, "status"], env=env, capture_output=True, text=True, check=False)
    assert status.returncode == 1 and "not running" in status.stdout
    stop = subprocess.run([*run, "stop"], env=env, capture_output=True, text=True, check=False)
    assert stop.returncode == 0 and "not running" in stop.stdout


EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


@pytest.mark.skipif(not EPHEMERAL.exists(), reason="the OS does not say where its ephemeral ports are")
def test_a_free_port_lies_below_the_ports_outgoing_connections_take() -> None:
    low = int(EPHEMERAL.read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(port < low for port in ports) and len(ports) > 1
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", ports.pop()))


def test_a_client_that_cannot_reach_the_broker_leaves_no_thread_behind() -> None:
    # kafka-python 3 starts a client's network thread before it reaches the broker and raises with
    # no client to close: the API's predictions reader, retrying every few seconds while the broker
    # was down, gained a thread and four descriptors per attempt.
    bootstrap = f"127.0.0.1:{free_port()}"
    before = set(threading.enumerate())

    def network_threads() -> set[threading.Thread]:
        return set(threading.enumerate()) - before

    for client_class in (KafkaConsumer, KafkaAdminClient, KafkaProducer):
        with pytest.raises(KafkaTimeoutError):
            kafka_python_client(client_class, bootstrap_servers=bootstrap, bootstrap_timeout_ms=200)
    assert not broker_answers(bootstrap, timeout_s=0.2)
    deadline = time.monotonic() + 10
    while network_threads() and time.monotonic() < deadline:
        time.sleep(0.05)  # a closed client's thread ends on its next wake-up
    assert not network_threads()
