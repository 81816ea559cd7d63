"""A URI with a user and a password never shows: not in an answer, a log line or a command's output.

The MLflow URI here names a registry that does not answer, so every path that reports a registry
failure runs, and MLflow's own error messages (which quote the URI they were given) are among what
is checked; the worker reaches a real MLflow server through such a URI. Each command runs as a real
process with ``-l debug``, tracebacks included.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from forecaster.kafka.broker import free_port
from forecaster.redaction import redact, redact_logs
from forecaster.settings import Settings
from models import registry
from tests.mlflow_server import MlflowServer
from tests.serving import serving
from tests.worker import FORECASTER_WORKER, WorkerProcess, wait_until

USER, PASSWORD = "alice", "pw-4f1c-secret"
SASL_PASSWORD = "sasl-7d2e-secret"


@pytest.fixture(scope="module")
def environ(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A process environment whose MLflow URI carries credentials and points at a closed port."""
    home = tmp_path_factory.mktemp("home")
    return {**os.environ, "FORECASTER_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"http://{USER}:{PASSWORD}@127.0.0.1:{free_port()}",
            "FORECASTER_SASL_PASSWORD": SASL_PASSWORD,
            # MLflow retries a refused connection for minutes by default.
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def _forecaster(environ: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "forecaster.cli", "-l", "debug", *args], env=environ,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    return done.stdout + done.stderr


def _shows_no_secret(text: str) -> None:
    assert PASSWORD not in text and f"{USER}:" not in text and SASL_PASSWORD not in text, text


def test_settings_show_the_uri_without_its_credentials(environ: dict[str, str]) -> None:
    shown = _forecaster(environ, "settings")
    _shows_no_secret(shown)
    assert "MLFLOW_TRACKING_URI=http://***@127.0.0.1:" in shown
    assert "FORECASTER_SASL_PASSWORD=***" in shown


@pytest.mark.parametrize("command", [["promote", "next-close"],
                                     ["backtest", "{data}/601988.SH.csv", "--model", "models:/next-close/1"]])
def test_a_failing_command_hides_the_credentials_mlflow_quotes(environ: dict[str, str], data_dir: Path,
                                                               command: list[str]) -> None:
    shown = _forecaster(environ, *(part.format(data=data_dir) for part in command))
    _shows_no_secret(shown)
    assert "***@127.0.0.1" in shown, shown  # the failure was the registry's, and its URI was shown


def _get(url: str, body: bytes | None = None, content_type: str = "application/json") -> str:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.read().decode()


def test_the_api_hides_the_credentials_in_answers_and_log(environ: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bar = {"ticker": "ACME", "date": "2024-01-05", "open": 10, "high": 11, "low": 9, "close": 10, "volume": 9}
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "forecaster.cli", "-l", "debug", "serve", "--port", str(port),
               "--bootstrap", f"127.0.0.1:{free_port()}"]
    with serving(command, url, log, environ):
        answers = [_get(f"{url}/health"), _get(f"{url}/models")]
        answers += [_get(f"{url}/forecast?model={model}", json.dumps({"bars": [bar]}).encode())
                    for model in ("champion", "1", "models:/next-close/1")]
    for answer in answers:
        _shows_no_secret(answer)
    assert any("***@127.0.0.1" in answer for answer in answers), answers
    _shows_no_secret(log.read_text())


@pytest.mark.kafka
def test_the_worker_log_hides_the_credentials(kafka_settings: Settings, tmp_path: Path) -> None:
    """The worker names its registry in its log when no champion is registered there: the log shows
    the URI of a real MLflow server without the user information it was reached with."""
    store = kafka_settings.replace(home=str(tmp_path / "store"))
    registry.client(store)  # an empty store: the server answers, with no champion
    with MlflowServer(store, tmp_path / "mlflow.log") as server:
        uri = server.uri.replace("http://", f"http://{USER}:{PASSWORD}@")
        settings = kafka_settings.replace(mlflow_env_tracking_uri=uri)
        with WorkerProcess(settings, tmp_path / "worker.log", [*FORECASTER_WORKER, "-l", "debug"]) as worker:
            wait_until(lambda: "no champion registered" in worker.output(), "no registry line", worker)
            worker.stop()
    shown = worker.log.read_text(errors="replace")
    _shows_no_secret(shown)
    assert f"http://***@127.0.0.1:{server.port}" in shown


@pytest.fixture
def redacting_logs() -> Iterator[None]:
    """:func:`redact_logs` installed for one test, then the factory before it again."""
    before = logging.getLogRecordFactory()
    redact_logs()
    redact_logs()  # a second install wraps nothing twice
    try:
        yield
    finally:
        logging.setLogRecordFactory(before)


def test_log_records_of_any_library_are_redacted(redacting_logs: None,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    uri = f"http://{USER}:{PASSWORD}@host:5000/api"
    with caplog.at_level(logging.INFO, logger="urllib3.somewhere"):
        logging.getLogger("urllib3.somewhere").info("request to %s failed", uri)
        try:
            raise ConnectionError(f"API request to {uri} failed")
        except ConnectionError:
            logging.getLogger("urllib3.somewhere").exception("again")
    text = caplog.text
    _shows_no_secret(text)
    assert text.count(redact(uri)) == 2  # in the message, and in the traceback's exception line
