"""The Kafka service of docker-compose.yml runs: its environment, turned into broker properties the
way the apache/kafka image does, starts a real Kafka 3.9 (the project's jars) that answers on both
of its client listeners. Host names and ports are moved to this machine's loopback and free ports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forecaster.kafka.broker import broker_answers, free_port, resolve_jars
from tests.deploy.compose import resolved_stack

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 90.0
# Variables the image reads itself instead of turning into properties.
NOT_PROPERTIES = {"KAFKA_HEAP_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_LOG4J_OPTS", "KAFKA_OPTS"}


def image_properties(environment: dict[str, str]) -> dict[str, str]:
    """The image's rule: drop ``KAFKA_``, ``___`` is ``-``, ``__`` is ``_``, ``_`` is ``.``, lower case.

    >>> image_properties({"KAFKA_NODE_ID": "1", "KAFKA_LOG__DIRS___X": "a", "CLUSTER_ID": "c"})
    {'node.id': '1', 'log_dirs-x': 'a'}
    """
    properties = {}
    for name, value in environment.items():
        if not name.startswith("KAFKA_") or name in NOT_PROPERTIES:
            continue
        key = name.removeprefix("KAFKA_").replace("___", "\0").replace("__", "\1").replace("_", ".")
        properties[key.replace("\0", "-").replace("\1", "_").lower()] = value
    return properties


def _on_this_machine(properties: dict[str, str], log_dir: Path) -> dict[str, str]:
    """Every ``kafka`` or ``localhost`` host on 127.0.0.1, every listener port on a free one."""
    ports = {int(p) for p in re.findall(r":(\d+)", properties["listeners"])}
    moved = {port: free_port() for port in sorted(ports)}

    def local(value: str) -> str:
        value = re.sub(r"\b(kafka|localhost)(?=:\d)", "127.0.0.1", value)
        value = re.sub(r"//:(?=\d)", "//127.0.0.1:", value)
        return re.sub(r":(\d+)", lambda m: f":{moved.get(int(m.group(1)), int(m.group(1)))}", value)

    return {**{key: local(value) for key, value in properties.items()}, "log.dirs": str(log_dir)}


@pytest.fixture(scope="module")
def compose_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    java = shutil.which("java")
    assert java is not None, "Java 17+ is needed (apt-get install openjdk-17-jdk-headless)"
    kafka = resolved_stack()["services"]["kafka"]["environment"]
    workdir = tmp_path_factory.mktemp("compose-kafka")
    properties = _on_this_machine(image_properties(kafka), workdir / "data")
    config = workdir / "server.properties"
    config.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    classpath = f"{resolve_jars()}/*"
    formatted = subprocess.run([java, "-cp", classpath, "kafka.tools.StorageTool", "format",
                                "-t", kafka["CLUSTER_ID"], "-c", str(config)],
                               capture_output=True, text=True, check=False)
    # Formatting validates the whole configuration first, so a broken one stops here.
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    with (workdir / "broker.out").open("wb") as out:
        process = subprocess.Popen([java, "-Xmx512m", "-cp", classpath, "kafka.Kafka", str(config)],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        yield {"properties": properties, "log": workdir / "broker.out"}
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.parametrize("listener", ["INTERNAL", "HOST"])
def test_the_compose_broker_answers_on_its_client_listeners(compose_kafka: dict[str, Any],
                                                            listener: str) -> None:
    advertised = compose_kafka["properties"]["advertised.listeners"].split(",")
    address = dict(item.split("://") for item in advertised)[listener]
    # The admin client retries until the broker is up, so this waits for the start too.
    answered = broker_answers(address, timeout_s=START_TIMEOUT_S)
    assert answered, compose_kafka["log"].read_text(errors="replace")[-3000:]
