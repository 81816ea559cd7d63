"""Security basics: Kafka security settings reach every client, the metrics endpoint binds where configured,
models come only from the configured MLflow registry, and the repository holds no credentials.

No broker is needed: each Kafka client class is replaced by one that records its keyword arguments
and stops the caller there. TLS settings point at a throwaway self-signed certificate made here.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import datetime as dt
import re
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
import kafka
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

import producers.publisher
from api.latest import LatestPredictions
from forecaster import demo
from forecaster import settings as settings_module
from forecaster.commands import tail
from forecaster.kafka import topics
from forecaster.kafka.broker import free_port
from forecaster.kafka.client import aiokafka_options, faust_credentials, kafka_python_options
from forecaster.settings import Settings
from forecaster.startup import require_broker
from models import registry
from models.core.config import CoreConfig
from stream_app.app import Startup, create_app
from stream_app.metrics import WorkerMetrics
from stream_app.model_holder import ModelHolder
from stream_app.monitor import ForecastMonitor
from stream_app.processor import BatchProcessor

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
CERT_NAME = "forecaster-test-ca"
SASL = {"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "forecaster", "sasl_password": "not-a-secret"}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A self-signed certificate (its own CA) and its key, as ``ssl_cafile/certfile/keyfile`` settings."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CERT_NAME)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return {"ssl_cafile": str(folder / "cert.pem"), "ssl_certfile": str(folder / "cert.pem"),
            "ssl_keyfile": str(folder / "key.pem")}


@pytest.fixture(params=["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def secure(request: pytest.FixtureRequest, tls_files: dict[str, str], tmp_path: Path) -> Settings:
    """Settings of one secured protocol, read from ``FORECASTER_*`` variables as a deployment sets them."""
    fields = {"security_protocol": request.param.lower(), "bootstrap": "kafka-1:9093, kafka-2:9093",
              "home": str(tmp_path), **tls_files, **SASL}
    return settings_module.load({settings_module.env_name(k): v for k, v in fields.items()})


def _expected_python_options(settings: Settings) -> dict[str, Any]:
    protocol = settings.security_protocol.upper()
    expected: dict[str, Any] = {"bootstrap_servers": ["kafka-1:9093", "kafka-2:9093"],
                                "security_protocol": protocol}
    if protocol.startswith("SASL"):
        expected |= {"sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "forecaster",
                     "sasl_plain_password": "not-a-secret"}
    if protocol.endswith("SSL"):
        expected |= {k: getattr(settings, k) for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")}
    return expected


def test_kafka_python_options_carry_the_security_settings(secure: Settings) -> None:
    assert kafka_python_options(secure) == _expected_python_options(secure)


def test_aiokafka_options_build_a_verifying_ssl_context(secure: Settings) -> None:
    options = aiokafka_options(secure)
    expected = _expected_python_options(secure)
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        expected.pop(name, None)
    context = options.pop("ssl_context", None)
    assert options == expected | {"bootstrap_servers": "kafka-1:9093,kafka-2:9093"}
    _check_context(context, secure)


def _check_context(context: ssl.SSLContext | None, settings: Settings) -> None:
    """No context without TLS; with it, one that verifies the brokers against the configured CA."""
    if not settings.security_protocol.upper().endswith("SSL"):
        assert context is None
        return
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    trusted = [dict(item[0] for item in ca["subject"]) for ca in context.get_ca_certs()]
    assert {"commonName": CERT_NAME} in trusted


def test_faust_credentials_match_the_protocol(secure: Settings) -> None:
    credentials = faust_credentials(secure)
    protocol = secure.security_protocol.upper()
    if protocol == "SSL":
        assert isinstance(credentials, faust.SSLCredentials)
        context = credentials.context
    else:
        assert isinstance(credentials, faust.SASLCredentials)
        assert (credentials.username, credentials.password, credentials.mechanism.value) == (
            "forecaster", "not-a-secret", "SCRAM-SHA-512")
        context = credentials.ssl_context
    _check_context(context, secure)


def test_plaintext_gives_no_credentials() -> None:
    assert faust_credentials(Settings()) is None
    assert kafka_python_options(Settings()) == {"bootstrap_servers": ["127.0.0.1:9092"],
                                                "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(("fields", "message"), [
    ({"security_protocol": "TLS"},
     "FORECASTER_SECURITY_PROTOCOL='TLS' is not one of PLAINTEXT, SASL_PLAINTEXT, SASL_SSL, SSL"),
    ({"security_protocol": "SASL_SSL"}, "SASL_SSL needs FORECASTER_SASL_MECHANISM"),
])
def test_bad_security_settings_are_clear_errors(fields: dict[str, str], message: str) -> None:
    for build in (kafka_python_options, aiokafka_options, faust_credentials):
        with pytest.raises(ValueError, match=re.escape(message)):
            build(Settings(**fields))


# -- every client gets them ----------------------------------------------------------------------------


class Captured(Exception):
    """Raised by a stand-in client once it has recorded how it was built."""


def _capture(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def client(*args: Any, **kwargs: Any) -> None:
        calls.append(kwargs)
        raise Captured(name)

    monkeypatch.setattr(owner, name, client)
    return calls


def _tail(settings: Settings) -> None:
    args = argparse.Namespace(bootstrap=None, from_beginning=True, ticker=None, horizon=None, shadow=False,
                              max_records=1, idle_timeout=1.0, format="json", connect_timeout=10.0)
    tail.run(args, settings)


#: Each kafka-python client of the system: (module, class it builds, how to make it build one).
CLIENTS: dict[str, tuple[object, str, Callable[[Settings], object]]] = {
    "replay publisher": (producers.publisher, "KafkaProducer", producers.publisher.Publisher),
    "tail": (kafka, "KafkaConsumer", _tail),
    "topics admin": (kafka, "KafkaAdminClient", topics.create_topics),
    "API predictions reader": (kafka, "KafkaConsumer", lambda s: LatestPredictions(s)._connect()),
    "demo namespace reset": (kafka, "KafkaAdminClient", demo.reset_namespace),
    "demo predictions reader": (kafka, "KafkaConsumer", lambda s: demo.follow_predictions(s, 1, None)),
    "worker's start-up broker check": (kafka, "KafkaAdminClient", lambda s: require_broker(s, 1.0)),
}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_every_kafka_python_client_gets_the_security_options(monkeypatch: pytest.MonkeyPatch,
                                                             secure: Settings, client: str) -> None:
    module, name, build = CLIENTS[client]
    calls = _capture(monkeypatch, module, name)
    with pytest.raises(Captured):
        build(secure)
    assert len(calls) == 1
    assert _expected_python_options(secure).items() <= calls[0].items()


def test_the_faust_app_connects_to_the_brokers_with_the_credentials(secure: Settings) -> None:
    conf = create_app(secure).conf
    assert [str(url) for url in conf.broker] == ["kafka://kafka-1:9093", "kafka://kafka-2:9093"]
    # What Faust's aiokafka transport gives every producer and consumer it builds for the app.
    auth = dict(credentials_to_aiokafka_auth(conf.broker_credentials))
    _check_context(auth.pop("ssl_context"), secure)
    expected = aiokafka_options(secure)
    for name in ("bootstrap_servers", "ssl_context"):
        expected.pop(name, None)
    assert auth == expected


# -- the metrics endpoint ------------------------------------------------------------------------------


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except ConnectionRefusedError:
        return False


def test_metrics_bind_to_localhost_by_default() -> None:
    assert Settings().metrics_host == settings_module.load({}).metrics_host == "127.0.0.1"


@pytest.mark.parametrize(("configured", "elsewhere"),
                         [("127.0.0.1", "127.0.0.2"), ("127.0.0.2", "127.0.0.1")])
def test_metrics_endpoint_answers_only_on_the_configured_address(configured: str, elsewhere: str) -> None:
    port = free_port()
    WorkerMetrics().serve(configured, port)
    with urllib.request.urlopen(f"http://{configured}:{port}/metrics", timeout=5) as response:
        assert response.status == 200 and b"forecaster_bars_consumed_total" in response.read()
    assert not _answers(elsewhere, port)


def test_the_worker_serves_metrics_at_the_settings_address(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            kafka_bootstrap: str) -> None:
    port = free_port()
    settings = Settings(home=str(tmp_path), metrics_host="127.0.0.2", metrics_port=port,
                        bootstrap=kafka_bootstrap)  # the worker starts its output producer too
    metrics = WorkerMetrics()
    model = ModelHolder(settings, ForecastMonitor(settings, metrics))
    startup = Startup(settings, metrics, model, request_timeout_s=30.0)

    async def no_registry() -> None:  # the model is not what this test is about
        model.processor = BatchProcessor(CoreConfig(model="naive"))

    async def start_and_stop() -> None:
        await startup.ensure()
        await startup.stop()

    monkeypatch.setattr(model, "reload", no_registry)
    asyncio.run(start_and_stop())
    assert _answers("127.0.0.2", port) and not _answers("127.0.0.1", port)


# -- models only from the configured registry -----------------------------------------------------------


@pytest.mark.parametrize("uri", ["runs:/0123abcd/model", "file:///tmp/model", "s3://bucket/model",
                                 "models://other-registry/next-close/1", "models:/next-close", "/tmp/model",
                                 "models:/next-close@champion/extra"])
def test_only_registry_uris_name_a_model(monkeypatch: pytest.MonkeyPatch, uri: str) -> None:
    def no_store(_: Any) -> None:
        raise AssertionError("no store may be opened for a URI that is not the registry's")

    monkeypatch.setattr(registry, "client", no_store)
    with pytest.raises(ValueError, match="expected models:/NAME@ALIAS or models:/NAME/VERSION"):
        registry.load_model(uri, Settings())


def test_a_model_in_another_store_is_not_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    other = Settings(home=str(tmp_path / "other"))
    store = registry.client(other)
    store.create_registered_model(other.model_name)
    version = store.create_model_version(other.model_name, source=str(tmp_path / "model")).version
    store.set_registered_model_alias(other.model_name, registry.CHAMPION, version)
    assert registry.champion_version(other) == str(version)
    # MLflow's own variables, set after the settings were made, name the other store; the settings'
    # store (never created) wins.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other.mlflow_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", other.mlflow_uri)
    configured = Settings(home=str(tmp_path / "configured"))
    assert registry.champion_version(configured) is None
    assert registry.load_champion(configured) is None
    with pytest.raises(ValueError, match=re.escape(f"is not in the registry at {configured.mlflow_uri}")):
        registry.load_model(f"models:/{other.model_name}/{version}", configured)


def _mlflow_uses(path: str) -> tuple[bool, set[str]]:
    """Whether a module imports MLflow, and which ``mlflow.<name>`` it uses."""
    tree = ast.parse((ROOT / path).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == "mlflow"}
    return any(name.split(".")[0] == "mlflow" for name in imported), used


def test_models_are_loaded_only_through_the_registry_module() -> None:
    # models.registry resolves every name on settings.mlflow_uri; training only logs runs to it.
    modules = [p for p in _tracked("api", "forecaster", "models", "producers", "stream_app")
               if p.endswith(".py")]
    assert {path for path in modules if _mlflow_uses(path)[0]} == {"models/registry.py", "models/training.py"}
    _, logged = _mlflow_uses("models/training.py")
    assert all(name == "start_run" or name.startswith("log_") for name in logged)


# -- no credentials in the repository ---------------------------------------------------------------------

PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
AWS_KEY = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
SECRET_SETTING = re.compile(
    r"""^\s*["']?[-\w.]*(password|passwd|secret|token|api_?key|access_?key)[-\w.]*["']?\s*[:=]\s*(?P<value>.*)$""",
    re.IGNORECASE)
#: Values that are not a secret: empty, a reference to the environment, a secret store reference, or a
#: boolean (a switch such as Kubernetes' ``automountServiceAccountToken: false``).
NOT_A_SECRET = re.compile(
    r"""^(|""|''|null|~|true|false|\$\{[^}]+\}|\$\(.+\)|\$\w+|secretKeyRef:?)\s*(#.*)?$""", re.IGNORECASE)
CONFIG_FILE = re.compile(r"(\.(ya?ml|toml|ini|cfg|conf|properties|json|env\w*)|Dockerfile|\.env(\..+)?)$")


def _tracked(*paths: str) -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--", *paths], cwd=ROOT, capture_output=True,
                            check=True)
    return [name for name in listed.stdout.decode().split("\0") if name]


def test_no_private_keys_or_cloud_keys_are_committed() -> None:
    found = []
    for path in _tracked():
        text = (ROOT / path).read_bytes().decode("utf-8", errors="replace")
        found += [f"{path}: {match.group(0)}" for pattern in (PRIVATE_KEY, AWS_KEY)
                  for match in pattern.finditer(text)]
    assert found == []


def test_config_files_hold_no_secret_values() -> None:
    found = [
        f"{path}:{number}: {line.strip()}"
        for path in _tracked() if CONFIG_FILE.search(path) and (ROOT / path).is_file()
        for number, line in enumerate((ROOT / path).read_text(errors="replace").splitlines(), 1)
        if (match := SECRET_SETTING.match(line))
        and not NOT_A_SECRET.match(match["value"].strip().rstrip(","))
    ]
    assert found == []


def test_no_env_file_is_committed_and_the_example_has_empty_secrets() -> None:
    tracked = _tracked()
    assert [p for p in tracked if Path(p).name == ".env" or Path(p).suffix == ".env"] == []
    example = [line for line in (ROOT / ".env.example").read_text().splitlines()
               if SECRET_SETTING.match(line)]
    assert example and all(line.split("=", 1)[1].strip() == "" for line in example)
