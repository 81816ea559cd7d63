"""Commands that cannot start say why and what to do in one line on stderr, with exit status 2.

Each test runs the real command in a child process, as a user would, and reads its whole stderr.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forecaster.kafka.broker import free_port
from forecaster.startup import explain

CLI = [sys.executable, "-m", "forecaster.cli"]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _run(*args: str, tmp_path: Path, timeout_s: float = 120, **environ: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORECASTER_", "MLFLOW_"))}
    env.update(FORECASTER_HOME=str(tmp_path / "home"), **environ)
    result = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout_s,
                            check=False)
    return result.returncode, result.stderr


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_worker_with_its_metrics_port_taken(taken_port: int, tmp_path: Path) -> None:
    code, err = _run("worker", "--metrics-port", str(taken_port), tmp_path=tmp_path)
    line = _one_line(err)
    assert code == 2
    assert line == (f"forecaster worker: error: the metrics port 127.0.0.1:{taken_port} is in use "
                    "(another process listens there): pass --metrics-port or set FORECASTER_METRICS_PORT "
                    "to a free port")


def test_worker_pool_with_its_metrics_port_taken(taken_port: int, tmp_path: Path) -> None:
    code, err = _run("worker", "--processes", "2", "--metrics-port", str(taken_port), tmp_path=tmp_path)
    assert code == 2
    assert f"the metrics port 127.0.0.1:{taken_port} is in use" in _one_line(err)


def test_serve_with_its_port_taken(taken_port: int, tmp_path: Path) -> None:
    code, err = _run("serve", tmp_path=tmp_path, FORECASTER_API_PORT=str(taken_port))
    line = _one_line(err)
    assert code == 2
    assert f"the API port 127.0.0.1:{taken_port} is in use" in line
    assert "pass --port or set FORECASTER_API_PORT" in line


def test_worker_without_a_broker(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    code, err = _run("worker", "--metrics-port", str(free_port()), "--connect-timeout", "1",
                     tmp_path=tmp_path, FORECASTER_BOOTSTRAP=bootstrap)
    line = _one_line(err)
    assert code == 2
    assert line.startswith(f"forecaster worker: error: cannot reach Kafka at {bootstrap} "
                           "(no answer within 1 s")
    assert line.endswith("start one with `forecaster kafka start`, or point FORECASTER_BOOTSTRAP or "
                         "--bootstrap at a running broker")


def test_topics_create_without_a_broker(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    code, err = _run("topics", "create", "--bootstrap", bootstrap, "--connect-timeout", "2",
                     tmp_path=tmp_path)
    line = _one_line(err)
    assert code == 2
    assert line.startswith(f"forecaster topics: error: cannot reach Kafka at {bootstrap}")
    assert "forecaster kafka start" in line


def test_promote_from_shadow_without_a_broker(tmp_path: Path) -> None:
    # It waited a minute (the topic reader's silence limit) before saying so.
    bootstrap = f"127.0.0.1:{free_port()}"
    code, err = _run("promote", "next-close", "--from-shadow", "--connect-timeout", "2", tmp_path=tmp_path,
                     FORECASTER_BOOTSTRAP=bootstrap)
    line = _one_line(err)
    assert code == 2
    assert line.startswith(f"forecaster promote: error: cannot reach Kafka at {bootstrap}")


@pytest.mark.parametrize(("command", "variable", "value", "says"), [
    (["worker"], "FORECASTER_METRICS_PORT", "ninety", "FORECASTER_METRICS_PORT='ninety' is not a valid int"),
    (["serve"], "FORECASTER_API_PORT", "80a", "FORECASTER_API_PORT='80a' is not a valid int"),
    (["worker"], "FORECASTER_INTERVAL_LEVELS", "0.95,0.8",
     "a setting of the forecasting core is out of range: interval_levels must be strictly increasing and "
     "inside (0, 1); got (0.95, 0.8) (set by FORECASTER_INTERVAL_LEVELS)"),
    (["backtest", "x.csv"], "FORECASTER_ARIMA_ORDER", "1,1",
     "a setting of the forecasting core is out of range: order must be three non-negative integers "
     "(p, d, q); got (1, 1) (set by FORECASTER_ARIMA_ORDER)"),
    (["serve"], "FORECASTER_API_PORT", "70000", "FORECASTER_API_PORT=70000 is not a TCP port (0 to 65535)"),
    (["replay", "x.csv"], "FORECASTER_REPLAY_DELIVERY_TIMEOUT_S", "inf",
     "FORECASTER_REPLAY_DELIVERY_TIMEOUT_S=inf is not a finite number"),
    (["serve"], "FORECASTER_API_BODY_MIN_RATE", "-1",
     "FORECASTER_API_BODY_MIN_RATE=-1 is not a number of bytes a second (0: no minimum)"),
    (["worker"], "FORECASTER_MODEL_RELOAD_S", "0",
     "FORECASTER_MODEL_RELOAD_S=0.0 is not a positive number of seconds up to 1,000,000"),
    # Finite, but past the Kafka clients' milliseconds: an OverflowError's traceback.
    (["replay", "x.csv"], "FORECASTER_REPLAY_DELIVERY_TIMEOUT_S", "1e308",
     "FORECASTER_REPLAY_DELIVERY_TIMEOUT_S=1e+308 is not a positive number of seconds up to 1,000,000"),
    # Each window is rows in memory: 0 divided by zero, 10**9 asked for tens of GB.
    (["worker"], "FORECASTER_ROLLING_WINDOW", "0",
     "FORECASTER_ROLLING_WINDOW=0 is not a whole number from 1 to 100,000"),
    (["worker"], "FORECASTER_DRIFT_WINDOW", "1000000000",
     "FORECASTER_DRIFT_WINDOW=1000000000 is not a whole number from 1 to 100,000"),
    (["worker"], "FORECASTER_PSI_THRESHOLD", "-1", "FORECASTER_PSI_THRESHOLD=-1.0 is not a positive number"),
    (["serve"], "FORECASTER_API_KEEP_ALIVE_S", "-1",  # 0 keeps no connection alive: taken
     "FORECASTER_API_KEEP_ALIVE_S=-1 is not a number of seconds from 0 to 1,000,000"),
    # Was found by MLflow after the whole training run, as "the MLflow store cannot be used ... fix the URI".
    (["train", "x.csv", "--model", "xgboost"], "FORECASTER_MODEL_NAME", "bad/name:x",
     "FORECASTER_MODEL_NAME='bad/name:x' is not a name MLflow registers a model under (not blank, no '/' "
     "or ':')"),
    (["worker"], "FORECASTER_STORE", "redis://",
     "FORECASTER_STORE='redis://' is not a table store the worker runs on: memory:// or rocksdb://"),
    (["tail"], "FORECASTER_BOOTSTRAP", "127.0.0.1:abc",  # was int()'s own "invalid literal for int()"
     "the bootstrap server '127.0.0.1:abc' is not HOST:PORT, a port from 1 to 65535 (FORECASTER_BOOTSTRAP)"),
    (["topics", "create"], "FORECASTER_PARTITIONS", "0",
     "FORECASTER_PARTITIONS=0 is not a whole number from 1 to 2,147,483,647"),
    (["worker"], "FORECASTER_SECURITY_PROTOCOL", "TLS",
     "FORECASTER_SECURITY_PROTOCOL='TLS' is not one of PLAINTEXT, SASL_PLAINTEXT, SASL_SSL, SSL"),
    (["worker"], "FORECASTER_WORKER_PROCESSES", "-2",
     "FORECASTER_WORKER_PROCESSES=-2 is not a number of processes from 0 (one per CPU) to 256"),
    # Each a process of some 150 MB: 100,000 of them were forked as asked.
    (["worker"], "FORECASTER_WORKER_PROCESSES", "100000",
     "FORECASTER_WORKER_PROCESSES=100000 is not a number of processes from 0 (one per CPU) to 256"),
    # Was found only once the worker had reached the broker and built its app.
    (["worker"], "FORECASTER_WORKER_COMPRESSION", "brotli",
     "FORECASTER_WORKER_COMPRESSION='brotli' is not one of none, gzip, snappy, lz4, zstd"),
    # Taken, and then every batch of the worker raised (its core model was "external" with no model).
    (["worker"], "FORECASTER_MODEL", "external",
     "FORECASTER_MODEL='external' is not a model of the core's own: naive or arima"),
    # `forecaster settings` listed it as if in force; every other command refused it.
    (["settings"], "FORECASTER_HORIZONS", "1,1000",
     "a setting of the forecasting core is out of range: horizons must be strictly increasing whole "
     "numbers of trading days in 1..260; got (1, 1000) (set by FORECASTER_HORIZONS)"),
    # Faust itself would import the module the variable names, and fail with a traceback.
    (["worker"], "FAUST_LOOP", "gevent",
     "FAUST_LOOP='gevent' is not an event loop the worker runs on: uvloop or aio"),
])
def test_a_bad_setting(tmp_path: Path, command: list[str], variable: str, value: str, says: str) -> None:
    code, err = _run(*command, tmp_path=tmp_path, **{variable: value})
    assert code == 2 and _one_line(err) == f"forecaster {command[0]}: error: {says}"


def test_promote_with_a_bad_mlflow_uri(tmp_path: Path) -> None:
    code, err = _run("promote", "next-close", tmp_path=tmp_path, MLFLOW_TRACKING_URI="foo://bar")
    line = _one_line(err)
    assert code == 2
    assert line.startswith("forecaster promote: error: the MLflow store cannot be used (")
    assert "unsupported URI 'foo://bar'" in line and line.endswith(
        "fix the URI that `forecaster settings` shows in force (FORECASTER_MLFLOW_TRACKING_URI, else "
        "MLFLOW_TRACKING_URI and MLFLOW_REGISTRY_URI)")


def test_kafka_start_without_java(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    code, err = _run("kafka", "start", "--port", str(free_port()), tmp_path=tmp_path, PATH=str(empty))
    assert code == 2
    assert _one_line(err) == ("forecaster kafka: error: `java` was not found on PATH; the local Kafka broker "
                              "needs it. Install openjdk-17-jre-headless (Debian/Ubuntu: `apt-get install "
                              "openjdk-17-jre-headless`).")


@pytest.mark.kafka
@pytest.mark.parametrize(("level", "shown", "hidden", "loop"), [
    ("info", "[INFO]", None, {}),  # uvloop, the default
    ("warn", None, "[INFO]", {"FAUST_LOOP": "aio"}),
])
def test_worker_honours_the_loglevel_and_the_event_loop(kafka_bootstrap: str, tmp_path: Path, level: str,
                                                        shown: str | None, hidden: str | None,
                                                        loop: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORECASTER_", "MLFLOW_", "FAUST_"))}
    env.update(FORECASTER_HOME=str(tmp_path / "home"), FORECASTER_BOOTSTRAP=kafka_bootstrap,
               FORECASTER_APP_ID=f"loglevel-{level}-{os.getpid()}", PYTHONUNBUFFERED="1", **loop)
    metrics_port = free_port()
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([*CLI, "worker", "-l", level, "--metrics-port", str(metrics_port)],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        # Faust's banner says the level it runs at once the worker is up; poll for it.
        deadline = time.monotonic() + 120
        while f"-stderr- ({level})" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
    finally:
        process.terminate()
        try:
            # Under FORECASTER_STOP_TIMEOUT_S (45 s): a stop that hangs exits with its threads' stacks.
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(log.read_text(errors="replace")) from None
    text = log.read_text(errors="replace")
    assert (shown is None or shown in text) and (hidden is None or hidden not in text)
    # Faust's banner names uvloop after the transport when the loop is uvloop's.
    [transport] = [line for line in text.splitlines() if "transport" in line and "kafka://" in line]
    assert ("+uvloop" in transport) == (loop.get("FAUST_LOOP", "uvloop") == "uvloop"), transport


def test_a_hostile_header_is_one_short_printable_line(tmp_path: Path) -> None:
    # ANSI escapes that would clear the terminal and retitle its window, in 900 columns (under the
    # reader's caps of columns and line length, so the message quotes them).
    cell = "da\x1b[2Jte\x1b]0;pwned\x07"
    (tmp_path / "evil.csv").write_text(",".join([cell] * 900) + "\n2020-01-01,1\n")
    code, err = _run("backtest", str(tmp_path / "evil.csv"), tmp_path=tmp_path)
    line = _one_line(err)
    assert code == 2
    assert line.startswith("forecaster backtest: error: evil.csv: ")
    assert "\\x1b[2J" in line and not any(c in line for c in "\x1b\x07")
    # Cut at 1,000 characters of the message (each escaped one shows as up to 4), saying how long it was.
    assert len(line) < 4200 and line.endswith(" characters)")


@pytest.mark.parametrize(("args", "says"), [
    (["serve", "--port", "70000"], "argument --port: '70000' is not a TCP port (0 to 65535)"),
    (["tail", "--connect-timeout", "inf"],
     "argument --connect-timeout: 'inf' is not a positive number of seconds up to 1,000,000"),
    (["replay", "x.csv", "--connect-timeout", "1e308"],  # was an OverflowError's traceback
     "argument --connect-timeout: '1e308' is not a positive number of seconds up to 1,000,000"),
    (["backtest", "x.csv", "--out", ""], "argument --out: an empty path names no file to write"),
    (["train", "x.csv", "--model", "xgboost", "--experiment", " "],
     "argument --experiment: an experiment needs a name"),
    (["tail", "--max-records", "0"],
     "argument --max-records: '0' is not a whole number from 1 to 2,147,483,647"),
    (["tail", "--horizon", "0"], "argument --horizon: '0' is not a whole number from 1 to 2,147,483,647"),
    (["promote", "m", "--from-shadow", "--min-days", "-1"],
     "argument --min-days: '-1' is not a whole number from 1 to 2,147,483,647"),
    (["topics", "create", "--partitions", "99999999999"],
     "argument --partitions: '99999999999' is not a whole number from 1 to 2,147,483,647"),
    # Checked once the work was done: a whole backtest, or the demo's whole run, for nothing.
    (["backtest", "x.csv", "--out", "/no-such-folder/p.csv"],
     "argument --out: the folder of '/no-such-folder/p.csv' does not exist"),
    (["demo", "--report", "r.txt"], "argument --report: 'r.txt' does not end in .html or .png"),
])
def test_an_option_out_of_range(tmp_path: Path, args: list[str], says: str) -> None:
    # Each reached the code before: an OverflowError's traceback, a struct.error's, or a tail that
    # stopped at once with exit status 0.
    code, err = _run(*args, tmp_path=tmp_path)
    assert code == 2 and err.strip().splitlines()[-1].endswith(f": error: {says}"), err


def test_a_replay_with_nothing_to_send_fails_before_it_connects(tmp_path: Path, data_dir: Path) -> None:
    path = data_dir / "601988.SH.csv"
    code, err = _run("replay", str(path), "--tickers", "ZZZ", "--bootstrap", f"127.0.0.1:{free_port()}",
                     tmp_path=tmp_path)
    assert code == 2 and _one_line(err) == (
        f"forecaster replay: error: nothing to replay in {path}: 3681 rows read, 3681 of them not selected "
        "by --tickers, --start or --end")


def test_what_the_broker_refuses_is_one_line() -> None:
    # `topics create` with a replication factor above the brokers' count printed a 27-line traceback.
    from kafka.errors import InvalidReplicationFactorError

    refusal = InvalidReplicationFactorError("Replication factor: 3 larger than available brokers: 1.")
    assert explain(refusal, "127.0.0.1:9092") == (
        "Kafka at 127.0.0.1:9092 refused: [Error 38] InvalidReplicationFactorError: Replication factor: 3 "
        "larger than available brokers: 1.")


@pytest.mark.kafka
def test_a_worker_the_broker_refuses_in_its_group_exits_and_says_why(kafka_bootstrap: str,
                                                                     tmp_path: Path) -> None:
    # A session timeout under the broker's group.min.session.timeout.ms (6 s): aiokafka keeps the
    # broker's refusal for a fetch that Faust, with no partition assigned, never makes. The worker
    # waited there for good, consuming nothing.
    code, err = _run("worker", "--metrics-port", str(free_port()), tmp_path=tmp_path,
                     FORECASTER_BOOTSTRAP=kafka_bootstrap, FORECASTER_SESSION_TIMEOUT_S="1",
                     FORECASTER_APP_ID=f"refused-{os.getpid()}")
    assert code == 78, err[-3000:]
    assert ("the broker refused this worker in the consumer group refused-"
            in err and "InvalidSessionTimeoutError" in err), err[-3000:]


@pytest.mark.parametrize("args", [["settings"], ["kafka", "status", "--data-dir", "none"]], ids=" ".join)
def test_a_reader_that_stops_reading_ends_the_command_quietly(tmp_path: Path, args: list[str]) -> None:
    # `forecaster settings | head -1`: was "error: [Errno 32] Broken pipe", exit 2, which fails a
    # `set -o pipefail` script as if the command had; now the status of a tool ended by SIGPIPE.
    reader, writer = os.pipe()
    os.close(reader)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORECASTER_", "MLFLOW_"))}
    try:
        result = subprocess.run([*CLI, *args], env={**env, "FORECASTER_HOME": str(tmp_path / "home")},
                                cwd=tmp_path, stdout=writer, stderr=subprocess.PIPE, timeout=120, check=False)
    finally:
        os.close(writer)
    assert (result.returncode, result.stderr) == (141, b"")


def test_a_driver_not_installed_is_one_line_and_a_broken_install_keeps_its_traceback() -> None:
    # MLFLOW_TRACKING_URI=postgresql://... without psycopg was a 59-line traceback.
    missing = ModuleNotFoundError("No module named 'psycopg'", name="psycopg")
    assert explain(missing, None) == (
        "the Python package 'psycopg' is not installed, and what was asked needs it: install it in this "
        "environment, or use a setting that does not (see `forecaster settings`)")
    assert explain(ModuleNotFoundError("No module named 'models.x'", name="models.x"), None) is None
