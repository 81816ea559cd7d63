"""The system against a real broker that requires SASL_SSL: TLS, then a SCRAM-SHA-512 login.

One broker for the module (``LocalBroker.start(security=...)``) on free ports in a temporary folder,
with a throwaway CA and a server certificate for 127.0.0.1 made here. Every command runs as a user
runs it, configured by ``FORECASTER_*`` variables only: topics, replay, a worker, ``tail``, and
``forecaster serve``, asked over HTTP. A wrong password or a client without TLS and SASL ends with
one line that names the cause, and the API's /health says the login was refused.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from forecaster.kafka.broker import BrokerInfo, BrokerSecurity, LocalBroker, broker_answers, free_port
from forecaster.settings import Settings, to_environ
from producers.readers import read_csv_bars
from tests.serving import serving
from tests.worker import WorkerProcess, expected_records, record_key, wait_for_records

pytestmark = [pytest.mark.kafka, pytest.mark.faults, pytest.mark.slow]

CLI = [sys.executable, "-m", "forecaster.cli"]
USER = "forecaster"
#: One ticker over one year of the bokeh sample: about 250 bars.
SAMPLE = ("--tickers", "AAPL", "--start", "2012-01-01", "--end", "2012-12-31")


def _certificates(folder: Path, keystore_password: str) -> tuple[Path, Path]:
    """A CA, and a server certificate it signs for 127.0.0.1 and localhost in a PKCS12 keystore:
    ``(keystore, CA certificate as PEM)``."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stream-forecaster test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "broker.p12").write_bytes(pkcs12.serialize_key_and_certificates(
        b"broker", key, cert, [ca], serialization.BestAvailableEncryption(keystore_password.encode())))
    return folder / "broker.p12", folder / "ca.pem"


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerInfo, BrokerSecurity]]:
    folder = tmp_path_factory.mktemp("secure-kafka")
    keystore_password = secrets.token_urlsafe(16)
    keystore, cafile = _certificates(folder, keystore_password)
    security = BrokerSecurity(keystore, keystore_password, cafile,
                              {"admin": secrets.token_urlsafe(16), USER: secrets.token_urlsafe(16)})
    broker = LocalBroker(folder / "kafka")
    info = broker.start(port=free_port(), security=security)
    try:
        yield info, security
    finally:
        broker.stop()


@pytest.fixture
def secure_settings(secure_broker: tuple[BrokerInfo, BrokerSecurity], tmp_path: Path) -> Settings:
    """What a deployment sets to use the broker: SASL_SSL, SCRAM-SHA-512, a user, the CA; own topics."""
    info, security = secure_broker
    suffix = secrets.token_hex(5)
    return Settings(
        home=str(tmp_path / "home"), bootstrap=info.bootstrap, security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512", sasl_username=USER, sasl_password=security.users[USER],
        ssl_cafile=str(security.cafile), topic_bars=f"bars-{suffix}", topic_dlq=f"bars.dlq-{suffix}",
        topic_predictions=f"predictions-{suffix}", topic_shadow=f"predictions.shadow-{suffix}",
        app_id=f"secure-{suffix}", partitions=2,
        window=60, refit_every=10, batch_size=100, model="arima",
    )


def _environ(settings: Settings) -> dict[str, str]:
    """This process's environment with ``settings`` as its only ``FORECASTER_*`` and ``MLFLOW_*``
    variables: a command configured by the environment alone, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORECASTER_", "MLFLOW_"))}
    return env | to_environ(settings)


def _forecaster(*args: str, settings: Settings, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """``forecaster ARGS`` configured by ``settings``."""
    return subprocess.run([*CLI, *args], env=_environ(settings), capture_output=True, text=True,
                          timeout=timeout_s, check=False)


@contextmanager
def _serving(settings: Settings, log: Path) -> Iterator[str]:
    """``forecaster serve`` configured by ``settings``, on a free port, its output in ``log``: its URL."""
    api = settings.replace(api_port=free_port())
    url = f"http://{api.api_host}:{api.api_port}"
    with serving([*CLI, "serve"], url, log, env=_environ(api)):
        yield url


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return orjson.loads(answer.read())


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_replay_worker_tail_and_api_over_sasl_ssl(secure_settings: Settings, data_dir: Path,
                                                  tmp_path: Path) -> None:
    sample = data_dir / "bokeh-stocks.csv.gz"
    created = _forecaster("topics", "create", settings=secure_settings)
    assert created.returncode == 0, created.stderr
    assert f"{secure_settings.topic_bars}: created" in created.stdout

    replayed = _forecaster("replay", str(sample), *SAMPLE, "--format", "json", settings=secure_settings)
    assert replayed.returncode == 0, replayed.stderr
    bars = read_csv_bars([sample], tickers=("AAPL",), start=dt.date(2012, 1, 1), end=dt.date(2012, 12, 31))
    summary = orjson.loads(replayed.stdout)
    assert summary["bars_sent"] == len(bars.bars) > 200 and summary["dead_letters_sent"] == 0

    expected = expected_records(bars, secure_settings)
    with WorkerProcess(secure_settings, tmp_path / "worker.log") as worker:
        records = wait_for_records(secure_settings, set(expected), worker)
    assert {record_key(r) for r in records} == set(expected)

    tailed = _forecaster("tail", "--from-beginning", "--format", "json", "--max-records", str(len(records)),
                         settings=secure_settings)
    assert tailed.returncode == 0, tailed.stderr
    shown = [orjson.loads(line) for line in tailed.stdout.splitlines()]
    assert sorted(record_key(r) for r in shown) == sorted(record_key(r) for r in records)

    with _serving(secure_settings, tmp_path / "serve.log") as url:
        deadline = time.monotonic() + 60
        while (reader := _get(f"{url}/predictions")["reader"])["records_read"] < len(records):
            assert time.monotonic() < deadline, reader
            time.sleep(0.2)
        entry, health = _get(f"{url}/predictions/AAPL"), _get(f"{url}/health")
    last_prediction = max((r for r in records if r["record_type"] == "prediction"), key=lambda r: r["as_of"])
    assert entry["prediction"]["as_of"] == last_prediction["as_of"]
    assert health["broker"]["reachable"] is True and health["status"] == "ok", health


@pytest.mark.parametrize("command", [
    pytest.param(["replay", "SAMPLE", *SAMPLE, "--connect-timeout", "3"], id="replay"),
    pytest.param(["worker", "--connect-timeout", "3"], id="worker"),
    pytest.param(["tail", "--connect-timeout", "3"], id="tail"),
])
def test_a_wrong_password_is_one_line_naming_the_settings(secure_settings: Settings, data_dir: Path,
                                                          command: list[str]) -> None:
    wrong = secure_settings.replace(sasl_password=secrets.token_urlsafe(16), metrics_port=free_port())
    args = [str(data_dir / "bokeh-stocks.csv.gz") if arg == "SAMPLE" else arg for arg in command]
    result = _forecaster(*args, settings=wrong)
    line = _one_line(result.stderr)
    assert result.returncode == 2
    assert line.startswith(f"forecaster {command[0]}: error: Kafka at {secure_settings.bootstrap} "
                           f"refused the SASL login of user '{USER}' (")
    assert "SaslAuthenticationFailed" in line
    assert line.endswith("fix FORECASTER_SASL_USERNAME and FORECASTER_SASL_PASSWORD (or "
                         "FORECASTER_SASL_MECHANISM)")
    assert wrong.sasl_password not in result.stderr + result.stdout
    assert secure_settings.sasl_password not in result.stderr + result.stdout


def test_the_api_health_says_the_login_was_refused(secure_settings: Settings, tmp_path: Path) -> None:
    wrong = secure_settings.replace(sasl_password=secrets.token_urlsafe(16))
    log = tmp_path / "serve.log"
    with _serving(wrong, log) as url:
        deadline = time.monotonic() + 90
        while "refused the SASL login" not in (health := _get(f"{url}/health"))["broker"]["detail"]:
            assert time.monotonic() < deadline, health
            time.sleep(0.2)
    assert health["broker"]["reachable"] is False and health["status"] == "degraded"
    assert health["broker"]["detail"].startswith(f"Kafka at {secure_settings.bootstrap} refused the SASL "
                                                 f"login of user '{USER}'"), health
    assert wrong.sasl_password not in orjson.dumps(health).decode() + log.read_text()


def test_the_port_takes_no_client_without_tls_and_a_login(secure_broker: tuple[BrokerInfo, BrokerSecurity],
                                                         secure_settings: Settings) -> None:
    info, security = secure_broker
    assert broker_answers(info.bootstrap, options=security.client_options())
    assert not broker_answers(info.bootstrap, timeout_s=2.0)  # PLAINTEXT
    assert not broker_answers(info.bootstrap, timeout_s=2.0,  # TLS without a login
                              options={"security_protocol": "SSL", "ssl_cafile": str(security.cafile)})
    plaintext = Settings(home=secure_settings.home, bootstrap=info.bootstrap)
    result = _forecaster("topics", "create", "--connect-timeout", "2", settings=plaintext)
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert line.startswith(f"forecaster topics: error: cannot reach Kafka at {info.bootstrap}")


def test_kafka_start_sasl_ssl_starts_a_broker_that_requires_the_login(tmp_path: Path) -> None:
    user = Settings(home=str(tmp_path / "home"), sasl_username="app", sasl_password=secrets.token_urlsafe(16))
    data, port = tmp_path / "kafka", free_port()
    start = ["kafka", "start", "--sasl-ssl", "--port", str(port), "--data-dir", str(data)]
    cafile = data / "tls" / "ca.pem"
    client = user.replace(bootstrap=f"127.0.0.1:{port}", security_protocol="SASL_SSL",
                          sasl_mechanism="SCRAM-SHA-512", ssl_cafile=str(cafile))
    try:
        started = _forecaster(*start, settings=user)
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == f"127.0.0.1:{port}"
        assert (f"FORECASTER_SECURITY_PROTOCOL=SASL_SSL, FORECASTER_SASL_MECHANISM=SCRAM-SHA-512, "
                f"FORECASTER_SSL_CAFILE={cafile} and log in as 'app'") in started.stderr
        created = _forecaster("topics", "create", settings=client)
        assert created.returncode == 0, created.stderr
        status = _forecaster("kafka", "status", "--data-dir", str(data), settings=client)
        assert status.returncode == 0 and status.stdout.startswith(f"running: 127.0.0.1:{port}")
        anonymous = _forecaster("kafka", "status", "--data-dir", str(data), settings=Settings(home=user.home))
        assert anonymous.returncode == 1 and anonymous.stdout.startswith("not answering")

        assert LocalBroker(data).stop()
        # The users were made with the data folder: another one cannot be added by starting again...
        other = _forecaster(*start, settings=user.replace(sasl_username="other"))
        assert other.returncode == 2
        assert _one_line(other.stderr) == (
            f"forecaster kafka: error: the broker data in {data} has no SCRAM-SHA-512 user 'other' "
            "(SCRAM users are created when a data folder is first used): start the secured broker with a "
            "new --data-dir, or stop it and remove this one")
        # ...and a restart keeps the user, the certificate and the topics.
        again = _forecaster(*start, settings=user)
        assert again.returncode == 0, again.stderr
        listed = _forecaster("topics", "create", settings=client)
        assert listed.returncode == 0 and f"{client.topic_bars}: exists" in listed.stdout, listed.stderr
    finally:
        LocalBroker(data).stop()


def test_kafka_start_sasl_ssl_without_a_user_says_which_settings(tmp_path: Path) -> None:
    result = _forecaster("kafka", "start", "--sasl-ssl", "--port", str(free_port()), "--data-dir",
                         str(tmp_path / "kafka"), settings=Settings(home=str(tmp_path / "home")))
    assert result.returncode == 2
    assert _one_line(result.stderr) == (
        "forecaster kafka: error: --sasl-ssl needs the user that the broker creates and clients log in as: "
        "set FORECASTER_SASL_USERNAME and FORECASTER_SASL_PASSWORD")
