"""A URI with a user and a password never shows: not in an answer, a log line or a command's output.

The MLflow URI here names a registry that does not answer, so every path that reports a registry
failure runs, and MLflow's own error messages (which quote the URI they were given) are among what
is checked; the worker reaches a real MLflow server through such a URI. Each command runs as a real
process with ``-l debug``, tracebacks included. The SASL password, which kafka-python logs with its
whole configuration, never shows either, nor a password that no pattern tells from the text around it
(a ``/``, ``#`` or blank in it): the secrets the process was configured with are hidden as they are.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from forecaster.cli_options import print_summary
from forecaster.kafka.broker import BrokerSecurity, LocalBroker, free_port
from forecaster.redaction import SHOWN, hide, redact, redact_logs
from forecaster.settings import Settings, load
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


def test_kafka_pythons_configuration_in_its_log_hides_the_sasl_password(environ: dict[str, str]) -> None:
    """kafka-python logs its whole configuration at debug level when a client starts."""
    sasl = {"FORECASTER_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "FORECASTER_SASL_MECHANISM": "PLAIN",
            "FORECASTER_SASL_USERNAME": USER, "FORECASTER_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    shown = _forecaster({**environ, **sasl}, "topics", "create", "--connect-timeout", "1")
    _shows_no_secret(shown)
    assert f"'sasl_plain_password': '{SHOWN}'" in shown, shown  # the configuration was logged


def test_a_password_of_any_key_in_a_log_record_or_its_arguments_is_redacted(
        redacting_logs: None, caplog: pytest.LogCaptureFixture) -> None:
    """Without the settings that name them: a library's own client may be given other secrets."""
    other = f"pw-{uuid.uuid4().hex}"
    config = {"sasl_plain_username": USER, "sasl_plain_password": other, "ssl_password": None}
    with caplog.at_level(logging.DEBUG, logger="somelib"):
        logging.getLogger("somelib").debug("Starting with configuration: %s", config)
        logging.getLogger("somelib").debug(f"jaas: username=\"{USER}\" password=\"{other}\";")
    assert other not in caplog.text
    assert caplog.text.count(SHOWN) == 2 and "'ssl_password': None" in caplog.text, caplog.text


#: Passwords whose ``/``, ``?`` or ``#`` ends a URI's authority, where a pattern looked for its ``@``.
SPLIT_PASSWORDS = ["pa/ss", "pa?ss", "pa#ss", "a/b?c#d"]


@pytest.mark.parametrize("password", SPLIT_PASSWORDS)
def test_a_uri_password_holding_a_delimiter_is_redacted(password: str) -> None:
    shown = redact(f"API request to 'http://{USER}:{password}@mlflow:5000/api/2.0?x=a@b' failed")
    assert shown == "API request to 'http://***@mlflow:5000/api/2.0?x=a@b' failed"


@pytest.mark.parametrize("text", [
    "models:/next-close@champion", "http://host:8080/users/@me", "sqlite:////home/me/mlflow.db",
    "see http://host/x and mail a@b.c",
    # Found by a review: a URI among others in compact JSON, or an IPv6 host, ran to a later "@";
    # counters and empty values of a key naming tokens were hidden as if secrets.
    '{"tracking_uri":"http://mlflow:5000","model_uri":"models:/next-close@champion"}',
    "http://mlflow:5000,models:/next-close@champion",
    "GET http://[::1]:5000/models/next-close@champion failed",
    "refused tokens=5 max_tokens=10 secrets=2", '{"api_token": ""}',
])
def test_what_holds_no_credentials_is_left_as_it_is(text: str) -> None:
    assert redact(text) == text


def test_the_secrets_the_process_was_configured_with_are_hidden_as_they_are() -> None:
    """Blanks end any pattern, and ``@/`` make a password's end a guess: only the secrets themselves,
    given by the settings, find these."""
    secret = uuid.uuid4().hex
    uri_login = f"{USER}:p@s w/{secret}"
    environ = {"FORECASTER_SASL_PASSWORD": f"sasl {secret}", "FORECASTER_API_TOKEN": f"token {secret}",
               "MLFLOW_REGISTRY_URI": f"http://{uri_login}@registry:5000",
               "MLFLOW_TRACKING_PASSWORD": f"mlflow {secret}", "MLFLOW_TRACKING_TOKEN": f"bearer {secret}"}
    load(environ)
    shown = redact(" | ".join([*environ.values(), uri_login]))
    assert secret not in shown, shown
    assert shown == " | ".join([*(SHOWN if "://" not in given else "http://***@registry:5000"
                                  for given in environ.values()), f"{USER}:{SHOWN}"]), shown


def test_a_user_name_or_a_short_password_leaves_ordinary_output_as_it_is(environ: dict[str, str]) -> None:
    # Found by a review: hidden wherever they appeared, "forecaster" made the app id "stream-***" and
    # a SASL password "kafka" the bootstrap "***:9092".
    changed = {"FORECASTER_MLFLOW_TRACKING_URI": "http://forecaster@127.0.0.1:1",
               "FORECASTER_SASL_PASSWORD": "kafka", "FORECASTER_BOOTSTRAP": "kafka:9092"}
    shown = _forecaster({**environ, **changed}, "settings")
    assert "FORECASTER_APP_ID=stream-forecaster" in shown, shown
    assert "FORECASTER_BOOTSTRAP=kafka:9092" in shown, shown
    assert "FORECASTER_SASL_PASSWORD=***" in shown


def test_a_json_summary_stays_json_whatever_secret_it_meets() -> None:
    digits = str(uuid.uuid4().int)[:12]
    hide(digits)  # a password of digits, which a number of the summary holds
    out = io.StringIO()
    summary = {"bars": int(digits + "7"), "store": f"http://{USER}:{digits}@mlflow:5000"}
    print_summary(argparse.Namespace(format="json"), "", summary, out)
    assert json.loads(out.getvalue()) == {"bars": int(digits + "7"), "store": "http://***@mlflow:5000"}


def test_settings_hide_a_uri_password_with_delimiters_and_blanks(environ: dict[str, str]) -> None:
    uri = "http://alice:pa/ss w?rd#1@127.0.0.1:1"
    shown = _forecaster({**environ, "FORECASTER_MLFLOW_TRACKING_URI": uri}, "settings")
    assert "pa/ss" not in shown and "w?rd#1" not in shown, shown
    assert shown.count("http://***@127.0.0.1:1") == 3, shown  # the variable, the stores in force


def test_a_prometheus_url_with_credentials_is_not_echoed(environ: dict[str, str], tmp_path: Path) -> None:
    url = f"http://bob:PROM/{PASSWORD}@127.0.0.1:{free_port()}"
    shown = _forecaster(environ, "report", "--prometheus", url, "--out", str(tmp_path / "report.html"))
    _shows_no_secret(shown)
    assert "PROM" not in shown and "'http://***@127.0.0.1:" in shown, shown


def test_the_models_answer_hides_a_uri_password_holding_a_slash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /models quotes the registry URI and MLflow's error (which quotes it again) in its 503."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = Settings(home=str(tmp_path), bootstrap=f"127.0.0.1:{free_port()}",
                        mlflow_tracking_uri=f"http://{USER}:pa/{PASSWORD}@127.0.0.1:{free_port()}")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        answer = client.get("/models")
    assert answer.status_code == 503, answer.text
    _shows_no_secret(answer.text)
    assert "http://***@127.0.0.1:" in answer.text, answer.text


def test_a_long_password_is_redacted_before_the_error_is_cut(environ: dict[str, str]) -> None:
    """MLflow's error is cut to a few hundred characters, which a long token alone may pass."""
    token = "eyJhbGciOiJSUzI1NiJ9." + "A" * 380
    shown = _forecaster({**environ, "MLFLOW_TRACKING_URI": f"http://token:{token}@127.0.0.1:{free_port()}"},
                        "promote", "next-close")
    assert "eyJhbGci" not in shown and "AAAA" not in shown, shown
    assert "http://***@127.0.0.1:" in shown, shown


def test_the_settings_repr_holds_no_secret() -> None:
    settings = Settings(sasl_password=SASL_PASSWORD, api_token=PASSWORD)
    assert SASL_PASSWORD not in repr(settings) and PASSWORD not in repr(settings)
    changed = settings.replace(partitions=2)  # the fields are still there, copied and compared
    assert (changed.sasl_password, changed.api_token) == (SASL_PASSWORD, PASSWORD)
    assert changed != settings.replace(partitions=2, api_token="other")


def test_the_broker_configuration_is_never_readable_by_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """server.properties holds the keystore's and the admin's passwords: it is created owner-only,
    so no moment passes where the umask's permissions let another user read it. Whatever the umask,
    and with no permission changed after it is made."""
    security = BrokerSecurity(tmp_path / "ks.p12", PASSWORD, tmp_path / "ca.pem", {"admin": SASL_PASSWORD})
    broker = LocalBroker(tmp_path / "kafka")
    for name in ("chmod", "fchmod", "lchmod"):
        monkeypatch.setattr(os, name, lambda *args, **kwargs: None, raising=False)
    monkeypatch.setattr(Path, "chmod", lambda *args, **kwargs: None)
    before = os.umask(0)
    try:
        broker._write_config(free_port(), free_port(), security)
    finally:
        os.umask(before)
    assert broker.config_file.stat().st_mode & 0o777 == 0o600
    assert SASL_PASSWORD in broker.config_file.read_text()
