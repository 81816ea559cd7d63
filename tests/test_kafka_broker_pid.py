"""``kafka stop`` and ``status`` act on the PID in ``broker.json`` only while it is this folder's broker.

A record outlives its broker (a crash, a reboot) and the OS may give its PID to any process: these
tests record the PID of another live process, or values no broker's PID can be, and check that nothing
is signalled. No Kafka runs here; a process that looks like the broker is a Python named ``java``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forecaster.kafka.broker import BrokerError, LocalBroker

CLI = [sys.executable, "-m", "forecaster.cli", "kafka"]
HAS_PROC = Path("/proc/self/cmdline").exists()


def _record(broker: LocalBroker, **fields: Any) -> None:
    """A ``broker.json`` as ``LocalBroker.start`` writes it, with ``fields`` in place of its own."""
    broker.data_dir.mkdir(parents=True, exist_ok=True)
    record = {"bootstrap": "127.0.0.1:9092", "port": 9092, "controller_port": 20001,
              "data_dir": str(broker.data_dir), **fields}
    broker.info_file.write_text(json.dumps(record))


def _cli(action: str, broker: LocalBroker, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORECASTER_", "MLFLOW_"))}
    env["FORECASTER_HOME"] = str(tmp_path / "home")
    # A session of its own: the code before the fix signalled PID 0 as given, its own process group,
    # which must not be pytest's.
    return subprocess.run([*CLI, action, "--data-dir", str(broker.data_dir)], env=env, capture_output=True,
                          text=True, timeout=60, check=False, start_new_session=True)


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not a broker, as the OS may give a dead broker's PID to."""
    process = subprocess.Popen(["sleep", "300"])
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def hands_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any ``os.kill`` (even a probe with signal 0) or a process started (Java, a broker) fails the test."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"called with {args}")

    monkeypatch.setattr(os, "kill", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


def test_a_record_naming_another_live_process_is_no_broker(
        tmp_path: Path, other_process: subprocess.Popen[bytes]) -> None:
    broker = LocalBroker(tmp_path / "kafka")
    _record(broker, pid=other_process.pid)
    broker.pid_file.write_text(f"{other_process.pid}\n")
    assert broker.running() is False
    assert broker.stop(timeout_s=2) is False
    assert other_process.poll() is None
    # Kept, as after any stop: the next start rewrites it.
    assert broker.info_file.exists() and not broker.pid_file.exists()


def test_status_and_stop_leave_another_process_alone(
        tmp_path: Path, other_process: subprocess.Popen[bytes]) -> None:
    broker = LocalBroker(tmp_path / "kafka")
    _record(broker, pid=other_process.pid)
    status = _cli("status", broker, tmp_path)
    assert status.returncode == 1, status.stderr
    assert status.stdout.strip() == f"not running ({broker.data_dir})"
    stop = _cli("stop", broker, tmp_path)
    assert stop.returncode == 0 and stop.stdout.strip() == "not running", stop.stderr
    assert other_process.poll() is None


def _lookalike(tmp_path: Path, name: str, config: Path) -> subprocess.Popen[bytes]:
    """A Python, under the program name ``name``, whose command line ends as the broker's does."""
    program = tmp_path / "bin" / name
    program.parent.mkdir(exist_ok=True)
    program.symlink_to(os.path.realpath(sys.executable))
    return subprocess.Popen([str(program), "-c", "import time; time.sleep(300)", "kafka.Kafka", str(config)])


@pytest.mark.skipif(not HAS_PROC, reason="no /proc: the recorded PID is trusted")
@pytest.mark.parametrize(("name", "folder", "ours"), [
    ("java", "kafka", True),
    ("java", "another-kafka", False),  # another folder's broker
    ("python3", "kafka", False),  # not a JVM
])
def test_only_this_folders_kafka_jvm_counts_as_its_broker(
        tmp_path: Path, name: str, folder: str, ours: bool) -> None:
    broker = LocalBroker(tmp_path / "kafka")
    process = _lookalike(tmp_path, name, LocalBroker(tmp_path / folder).config_file)
    try:
        _record(broker, pid=process.pid)
        assert broker.owns(process.pid) is ours
        assert broker.running() is ours
        assert broker.stop(timeout_s=10) is ours
        if ours:
            assert process.wait(timeout=10) == -signal.SIGTERM
        else:
            assert process.poll() is None
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(("record", "said"), [
    ({"pid": 0}, '"pid" is 0, not a PID the broker can have (2 to 2147483647)'),
    ({"pid": -1}, '"pid" is -1, not a PID'),
    ({"pid": 1}, '"pid" is 1, not a PID'),
    ({"pid": 2**31}, '"pid" is 2147483648, not a PID'),
    ({"pid": 99999999999999999999}, '"pid" is 99999999999999999999, not a PID'),
    ({"pid": "123"}, '"pid" is "123", not a whole number'),
    ({"pid": True}, '"pid" is true, not a whole number'),
    ({"pid": 1234.0}, '"pid" is 1234.0, not a whole number'),
    ({"pid": None}, '"pid" is null, not a whole number'),
    ({"pid": 1234, "port": "9092"}, '"port" is "9092", not a whole number'),
    ({"pid": 1234, "bootstrap": None}, '"bootstrap" is null, not a string'),
    ({"pid": 1234, "owner": "me"}, 'an unknown field "owner"'),
    ('{"pid": 1234, "port": 9092, "controller_port": 20001, "data_dir": "/k"}', 'no "bootstrap"'),
    ("[1234]", "[1234] where a JSON object is expected"),
    ('{"pid": 12', "Expecting"),  # cut short
])
@pytest.mark.usefixtures("hands_off")
def test_a_malformed_record_is_an_error_and_signals_nothing(
        tmp_path: Path, record: dict[str, Any] | str, said: str) -> None:
    broker = LocalBroker(tmp_path / "kafka")
    if isinstance(record, str):
        broker.data_dir.mkdir()
        broker.info_file.write_text(record)
    else:
        _record(broker, **record)
    for action in (broker.stop, broker.running, broker.info, broker.start):
        with pytest.raises(BrokerError) as raised:
            action()
        message = str(raised.value)
        assert message.startswith(f"{broker.info_file} is not the record `forecaster kafka start` writes (")
        assert said in message and "\n" not in message
        assert message.endswith(f"remove it once no broker runs from {broker.data_dir}")


@pytest.mark.parametrize("pid", ["123", 99999999999999999999, 0])
@pytest.mark.parametrize("action", ["stop", "status"])
def test_the_command_line_says_so_in_one_line(tmp_path: Path, pid: object, action: str) -> None:
    broker = LocalBroker(tmp_path / "kafka")
    _record(broker, pid=pid)
    result = _cli(action, broker, tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == "", result.stderr
    assert result.stderr.startswith(f"forecaster kafka: error: {broker.info_file} is not the record ")
