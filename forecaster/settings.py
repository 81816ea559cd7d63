"""Every setting of the system, read once from ``FORECASTER_*`` environment variables.

One :class:`Settings` object is built at start (:func:`load`) and passed down; nothing else reads
the environment. Each field's environment variable is its name upper-cased with the prefix
``FORECASTER_`` (``bootstrap`` is ``FORECASTER_BOOTSTRAP``), except the few that another tool
defines (:data:`ECOSYSTEM`: MLflow's ``MLFLOW_TRACKING_URI`` and ``MLFLOW_REGISTRY_URI``, Faust's
``FAUST_LOOP``), and the table that the README shows is generated from :data:`DOCS`, so the two
cannot disagree.

Examples
--------
>>> s = load({"FORECASTER_PARTITIONS": "4", "FORECASTER_INTERVAL_LEVELS": "0.5,0.9"})
>>> s.partitions, s.interval_levels, s.topic_bars
(4, (0.5, 0.9), 'bars')
>>> load({"FORECASTER_PARTITIONS": "many"})
Traceback (most recent call last):
...
ValueError: FORECASTER_PARTITIONS='many' is not a valid int
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forecaster.redaction import hide, uri_password
from models.core.config import CORE_MODELS
from models.core.config import SETTINGS as CORE_SETTINGS

PREFIX = "FORECASTER_"
#: Settings read from another tool's own variable, so that users of that tool need not learn ours.
ECOSYSTEM = {"mlflow_env_tracking_uri": "MLFLOW_TRACKING_URI",
             "mlflow_env_registry_uri": "MLFLOW_REGISTRY_URI",
             "faust_loop": "FAUST_LOOP"}


def _default_home() -> str:
    # Local state (broker data, MLflow store, worker tables, demo report) lives in one folder.
    return str(Path.cwd() / ".forecaster")


#: The sample data shipped inside the package (forecaster/data), so a clone or a wheel has it.
SAMPLE_DATA_DIR = Path(__file__).resolve().parent / "data"


def _default_data_dir() -> str:
    return str(SAMPLE_DATA_DIR)


def _core(name: str) -> Any:
    """The setting ``name`` of the forecasting core, with the default and doc that CoreConfig declares."""
    spec = CORE_SETTINGS[name]
    return field(default=spec.default, metadata={"doc": spec.metadata["doc"]})


@dataclass(frozen=True)
class Settings:
    """The whole configuration; field docs are in :data:`DOCS`."""

    home: str = field(default_factory=_default_home)
    data_dir: str = field(default_factory=_default_data_dir)
    # Kafka
    bootstrap: str = "127.0.0.1:9092"
    topic_bars: str = "bars"
    topic_dlq: str = "bars.dlq"
    topic_predictions: str = "predictions"
    topic_shadow: str = "predictions.shadow"
    partitions: int = 8
    replication_factor: int = 1
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    # Out of the repr, which a log line or a traceback may show; `forecaster settings` hides it too.
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    # Replay
    replay_processes: int = 0
    replay_delivery_timeout_s: float = 120.0
    # Worker
    app_id: str = "stream-forecaster"
    store: str = "memory://"
    # Above what a backlog fills within the batch timeout: a ticker's state is written once per
    # batch, so longer batches write fewer states per bar (docs/benchmarks.md).
    batch_size: int = 5000
    batch_timeout_s: float = 0.2
    session_timeout_s: float = 10.0
    stop_timeout_s: float = 45.0
    worker_compression: str = "none"
    worker_processes: int = 1
    worker_datadir: str = ""
    faust_loop: str = "uvloop"
    # Forecasting core: defaults and docs are CoreConfig's (models/core/config.py), the one source
    model: str = _core("model")
    window: int = _core("window")
    refit_every: int = _core("refit_every")
    arima_order: tuple[int, int, int] = _core("arima_order")
    interval_levels: tuple[float, ...] = _core("interval_levels")
    horizons: tuple[int, ...] = _core("horizons")
    interval_centre: str = _core("interval_centre")
    calibration_decay: float = _core("calibration_decay")
    feature_history: int = _core("feature_history")
    # MLflow
    mlflow_tracking_uri: str = ""
    mlflow_env_tracking_uri: str = ""
    mlflow_env_registry_uri: str = ""
    model_name: str = "next-close"
    model_reload_s: float = 30.0
    # Observability
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    metrics_ticker_limit: int = 50
    rolling_window: int = 63
    drift_window: int = 250
    psi_threshold: float = 0.25
    coverage_tolerance: float = 0.05
    page_hinkley_threshold: float = 50.0
    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_max_bars: int = 50000
    api_max_bytes: int = 64 * 1024 * 1024
    api_max_rows: int = 100_000
    api_max_dead_letters: int = 100
    api_concurrency: int = 64
    api_forecasts: int = 2
    api_header_timeout_s: float = 10.0
    api_body_timeout_s: float = 30.0
    api_body_min_rate: int = 1024
    api_keep_alive_s: int = 5
    api_trusted_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    api_rate_per_s: float = 10.0
    api_rate_burst: int = 40
    api_token: str = field(default="", repr=False)  # out of the repr, as sasl_password
    api_model_cache: int = 4

    @property
    def worker_dir(self) -> Path:
        """The worker's local state directory: ``worker_datadir``, else ``worker`` under ``home``."""
        return Path(self.worker_datadir or Path(self.home) / "worker")

    @property
    def mlflow_uri(self) -> str:
        """The tracking URI in force; see :meth:`mlflow_sources`."""
        return self.mlflow_sources()["tracking"][0]

    @property
    def mlflow_registry_uri(self) -> str:
        """The model registry URI in force; see :meth:`mlflow_sources`."""
        return self.mlflow_sources()["registry"][0]

    def mlflow_sources(self) -> dict[str, tuple[str, str]]:
        """``{"tracking": (uri, why), "registry": (uri, why)}``: which MLflow store is used and why.

        ``FORECASTER_MLFLOW_TRACKING_URI`` names both; else MLflow's own ``MLFLOW_TRACKING_URI``
        and ``MLFLOW_REGISTRY_URI`` apply, the registry following the tracking URI as in MLflow;
        else both are a SQLite store under ``home``.

        >>> s = Settings(home="/h", mlflow_env_tracking_uri="sqlite:///team.db")
        >>> s.mlflow_sources()["registry"][1]
        'set by MLFLOW_TRACKING_URI; neither FORECASTER_MLFLOW_TRACKING_URI nor MLFLOW_REGISTRY_URI is set'
        >>> Settings(home="/h").mlflow_sources()["tracking"][0]
        'sqlite:////h/mlflow/mlflow.db'
        """
        ours, theirs = env_name("mlflow_tracking_uri"), env_name("mlflow_env_tracking_uri")
        registry_variable = env_name("mlflow_env_registry_uri")
        if self.mlflow_tracking_uri:
            both = (self.mlflow_tracking_uri, f"set by {ours}")
            return {"tracking": both, "registry": both}
        default = f"sqlite:///{Path(self.home) / 'mlflow' / 'mlflow.db'}"
        if self.mlflow_env_tracking_uri:
            tracking = (self.mlflow_env_tracking_uri, f"set by {theirs}; {ours} is not set")
        else:
            tracking = (default, f"the default under FORECASTER_HOME; neither {ours} nor {theirs} is set")
        if self.mlflow_env_registry_uri:
            registry = (self.mlflow_env_registry_uri, f"set by {registry_variable}; {ours} is not set")
        elif self.mlflow_env_tracking_uri:
            registry = (tracking[0], f"set by {theirs}; neither {ours} nor {registry_variable} is set")
        else:
            registry = tracking
        return {"tracking": tracking, "registry": registry}

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            problem = _out_of_range(f.name, value)
            if problem:
                raise ValueError(f"{env_name(f.name)}={value!r} {problem}")

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (command-line options override the environment)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


#: Settings counted from 1 (a topic of no partitions, a batch of no bars, no request at once), up to
#: Kafka's 32-bit counts.
_COUNTS = frozenset({"partitions", "replication_factor", "batch_size", "api_max_bars", "api_max_bytes",
                     "api_max_rows", "api_concurrency", "api_forecasts"})
#: Rows of the worker's rolling figures (per labelled ticker and pooled group) and of its drift windows
#: (per feature), each held in memory: the most either setting may ask for.
MAX_WINDOW = 100_000
#: The longest duration a setting or option may give, in seconds: the Kafka clients take milliseconds
#: as 32-bit integers (24.8 days), and no wait of the project's needs more.
MAX_SECONDS = 1_000_000
#: The most processes ``--processes`` may start on one host (worker processes hold some 150 MB each).
MAX_PROCESSES = 256
#: Kafka's codecs for the worker's records and changelog (``none``: uncompressed).
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


def _out_of_range(name: str, value: Any) -> str | None:
    """Why a setting's value cannot be used (beyond its type), or None.

    >>> Settings(api_port=70000)
    Traceback (most recent call last):
    ...
    ValueError: FORECASTER_API_PORT=70000 is not a TCP port (0 to 65535)
    >>> Settings(replay_delivery_timeout_s=float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: FORECASTER_REPLAY_DELIVERY_TIMEOUT_S=inf is not a finite number
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    if name.endswith("_port") and not 0 <= value <= 65535:
        return "is not a TCP port (0 to 65535)"
    if (name.endswith("_timeout_s") or name == "model_reload_s") and not 0 < value <= MAX_SECONDS:
        return f"is not a positive number of seconds up to {MAX_SECONDS:,}"
    if name == "api_keep_alive_s" and not 0 <= value <= MAX_SECONDS:  # 0: no connection kept alive
        return f"is not a number of seconds from 0 to {MAX_SECONDS:,}"
    if name in ("rolling_window", "drift_window") and not 1 <= value <= MAX_WINDOW:
        return f"is not a whole number from 1 to {MAX_WINDOW:,}"
    if name in ("psi_threshold", "page_hinkley_threshold") and value <= 0:
        return "is not a positive number"
    if name == "coverage_tolerance" and value < 0:
        return "is not a distance from the nominal coverage (0 or more)"
    if name == "metrics_ticker_limit" and value < 0:
        return "is not a whole number of tickers (0: none gets series of its own)"
    if name == "model_name" and (not value.strip() or "/" in value or ":" in value):
        return "is not a name MLflow registers a model under (not blank, no '/' or ':')"
    if name == "api_body_min_rate" and value < 0:
        return "is not a number of bytes a second (0: no minimum)"
    if name in _COUNTS and not 1 <= value <= 2**31 - 1:
        return "is not a whole number from 1 to 2,147,483,647"
    if name in ("worker_processes", "replay_processes") and not 0 <= value <= MAX_PROCESSES:
        return f"is not a number of processes from 0 (one per CPU) to {MAX_PROCESSES}"
    if name == "model" and value not in CORE_MODELS:  # "external" is a champion's, never a setting's
        return f"is not a model of the core's own: {' or '.join(CORE_MODELS)}"
    if name == "worker_compression" and value not in COMPRESSIONS:
        return f"is not one of {', '.join(COMPRESSIONS)}"
    if name == "store" and value.partition("://")[0] not in STORES:
        return f"is not a table store the worker runs on: {' or '.join(s + '://' for s in STORES)}"
    return None


#: The schemes of FORECASTER_STORE: Faust's memory store, or RocksDB (the ``rocksdb`` extra).
STORES = ("memory", "rocksdb")


DOCS: dict[str, str] = {
    "home": "folder for local state: broker data, MLflow store, worker tables, reports "
    "(default: ./.forecaster)",
    "data_dir": "folder of the sample data (default: the package's own forecaster/data)",
    "bootstrap": "Kafka bootstrap servers, host:port[,host:port]",
    "topic_bars": "topic of validated bars (key: ticker)",
    "topic_dlq": "dead-letter topic for rejected rows and poison messages",
    "topic_predictions": "topic of predictions and scores (key: ticker)",
    "topic_shadow": "topic of the challengers' predictions and scores, made in shadow beside the "
    "champion's (key: ticker; written only while a `challenger` alias exists)",
    "partitions": "partition count used by `forecaster topics create`",
    "replication_factor": "replication factor used by `forecaster topics create`",
    "security_protocol": "Kafka security.protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    "sasl_mechanism": "SASL mechanism, e.g. PLAIN or SCRAM-SHA-512",
    "sasl_username": "SASL user name",
    "sasl_password": "SASL password (never commit it; set it in the environment)",
    "ssl_cafile": "CA bundle that signs the brokers' certificates",
    "ssl_certfile": "client certificate for mutual TLS",
    "ssl_keyfile": "client private key for mutual TLS",
    "replay_processes": "producer processes of an unpaced replay; 0: one per CPU from 50,000 bars on, "
    "else one (never more than there are tickers); at most " + str(MAX_PROCESSES),
    "replay_delivery_timeout_s": "seconds a bar may wait for the broker's acknowledgement, retries "
    "included, before the replay reports it undelivered (Kafka's delivery.timeout.ms; at least 16)",
    "app_id": "Faust application id: consumer group and changelog topic prefix",
    "store": "Faust table store: memory:// or rocksdb:// (needs the rocksdb extra)",
    "batch_size": "most bars the worker takes from the stream at once",
    "batch_timeout_s": "longest the worker waits to fill a batch, seconds",
    "session_timeout_s": "seconds without a heartbeat before a worker's partitions go to the others",
    "stop_timeout_s": "seconds a worker gets to stop (last batch, flush) once asked to; past them it "
    "prints every thread's stack and exits with status 75 (under the pool's and Kubernetes' 60 s)",
    "worker_compression": "compression of the worker's records and changelog: none, gzip, snappy, lz4 "
    "or zstd (none: its states are floats that lz4 shrinks 1.5x for 13 % of the worker's throughput)",
    "worker_processes": "worker processes `forecaster worker` runs on this host, one consumer group, one "
    "metrics endpoint; 0: one per CPU; at most " + str(MAX_PROCESSES),
    "worker_datadir": "the worker's local state (Faust's files, RocksDB tables); empty: `worker` under "
    "home (`worker/process-N` for each of several processes)",
    "faust_loop": "Faust's own variable: the event loop of `forecaster worker`, uvloop or aio (asyncio's, "
    "which costs the worker about a seventh more CPU per bar, docs/benchmarks.md; Faust's own default, "
    "so `faust -A stream_app.app worker` runs on it unless this is set)",
    # The forecasting core's settings are documented beside their defaults, in CoreConfig.
    **{f.name: f.metadata["doc"] for f in dataclasses.fields(Settings) if "doc" in f.metadata},
    "mlflow_tracking_uri": "MLflow tracking and registry URI; when empty, MLflow's own variables below "
    "apply, else a SQLite store under home (`forecaster settings` says which is in force)",
    "mlflow_env_tracking_uri": "MLflow's own tracking URI variable, used when FORECASTER_MLFLOW_TRACKING_URI "
    "is empty",
    "mlflow_env_registry_uri": "MLflow's own registry URI variable, used when FORECASTER_MLFLOW_TRACKING_URI "
    "is empty (default: the tracking URI)",
    "model_name": "registered model whose `champion` alias the worker serves (and whose `challenger` "
    "and `challenger-*` aliases it runs in shadow)",
    "model_reload_s": "seconds between checks for a newly promoted champion or a challenger",
    "metrics_host": "address the Prometheus endpoint binds to",
    "metrics_port": "port of the Prometheus endpoint",
    "metrics_ticker_limit": "tickers that get per-ticker metric series; the rest are aggregated",
    "rolling_window": "scored predictions in the rolling error metrics",
    "drift_window": "recent bars per feature compared with the training reference (judged once full)",
    "psi_threshold": "population stability index above which a feature counts as drifted",
    "coverage_tolerance": "how far interval coverage may stray from its nominal level, beyond its sampling "
    "error, before the alert fires",
    "page_hinkley_threshold": "Page-Hinkley threshold on the standardized absolute error",
    "api_host": "address `forecaster serve` (HTTP API and web page) binds to",
    "api_port": "port of `forecaster serve`",
    "api_max_bars": "most bars one POST /forecast may forecast, counted once per horizon (larger inputs get "
    "a 413)",
    "api_max_bytes": "largest body one POST /forecast may send, and largest size a gzipped upload may "
    "inflate to, in bytes; larger ones get a 413 as soon as they pass it (64 MiB)",
    "api_max_rows": "most rows (CSV rows or JSON bars, rejected and filtered ones included) one POST "
    "/forecast may read; the read stops with a 413 at the next one",
    "api_max_dead_letters": "rejected rows an answer lists (the first ones); dead_letters_total and "
    "dead_letters_by_reason count them all",
    "api_concurrency": "connections and requests `forecaster serve` holds at once; a request past it gets "
    "a 503",
    "api_forecasts": "POST /forecast requests read and run at once (each holds up to api_max_bytes and "
    "its bars); one past them gets a 503 with Retry-After, so the server's memory is bounded by this "
    "many requests",
    "api_header_timeout_s": "seconds a request's headers may take to arrive; the connection is closed then",
    "api_body_timeout_s": "seconds a request's body may pause between two pieces (a 408 then), and a client "
    "reading a forecast's answer (the connection is closed then)",
    "api_body_min_rate": "bytes a second a request's body must average after its first api_body_timeout_s "
    "seconds (a 408 then: a client trickling a byte within every pause held its forecast slot for as "
    "long as it went on); 0: no minimum",
    "api_keep_alive_s": "seconds an idle kept-alive connection stays open",
    "api_trusted_hosts": "Host header values the API answers (against DNS rebinding), with api_host; "
    "* answers any; /health answers any, for orchestrators' probes",
    "api_rate_per_s": "requests per second a client address may send on average (all but /health); "
    "past api_rate_burst it gets a 429 with Retry-After; 0: no limit",
    "api_rate_burst": "requests a client address may send at once before api_rate_per_s applies",
    "api_token": "when set, every request but /health, / and /static/* must send `Authorization: Bearer "
    "TOKEN` (a 401 otherwise); never commit it",
    "api_model_cache": "registry versions kept loaded for ?model=N (the least recently used is dropped)",
}


def env_name(name: str) -> str:
    """The environment variable of a field: ``bootstrap`` -> ``FORECASTER_BOOTSTRAP``.

    >>> env_name("mlflow_env_registry_uri")
    'MLFLOW_REGISTRY_URI'
    """
    return ECOSYSTEM.get(name) or PREFIX + name.upper()


def _parse(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(raw)
            return raw.lower() in {"1", "true", "yes"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            kind = type(default[0])
            # Blanks around the commas are not part of a value: "a, b" is ("a", "b").
            return tuple(kind(part.strip()) for part in raw.split(",") if part.strip())
    except ValueError:
        kind_name = type(default).__name__ if not isinstance(default, tuple) else "list"
        raise ValueError(f"{env_name(name)}={raw!r} is not a valid {kind_name}") from None
    return raw


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``environ`` (default: the process environment).

    >>> load({"FORECASTER_API_TRUSTED_HOSTS": "api.example.com, localhost"}).api_trusted_hosts
    ('api.example.com', 'localhost')
    """
    environ = os.environ if environ is None else environ
    defaults = Settings()
    values = {}
    for f in dataclasses.fields(Settings):
        raw = environ.get(env_name(f.name))
        if raw is not None and raw != "":
            values[f.name] = _parse(f.name, raw, getattr(defaults, f.name))
    settings = dataclasses.replace(defaults, **values)
    hide(*secrets(settings, environ))
    return settings


#: MLflow's own variables of its HTTP login, read by MLflow's client rather than by :func:`load`.
MLFLOW_LOGIN = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def secrets(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """The secrets of ``settings`` and ``environ`` that :func:`load` makes
    :func:`forecaster.redaction.redact` hide: the SASL password, the API token, MLflow's password and
    token, and the password of each MLflow URI (one with a ``/`` or a blank in it is found by no
    pattern).

    >>> secrets(Settings(sasl_password="pw-1", mlflow_tracking_uri="http://u:p/w@h"), {})
    ['pw-1', 'p/w']
    """
    uris = (settings.mlflow_tracking_uri, settings.mlflow_env_tracking_uri, settings.mlflow_env_registry_uri)
    found = [settings.sasl_password, settings.api_token, *map(uri_password, uris),
             *(environ.get(name, "") for name in MLFLOW_LOGIN)]
    return [secret for secret in found if secret]


def to_environ(settings: Settings) -> dict[str, str]:
    """The environment variables that :func:`load` turns back into ``settings`` (for child processes).

    >>> s = Settings(partitions=3, arima_order=(1, 1, 1))
    >>> load(to_environ(s)) == s
    True
    """
    return {env_name(f.name): env_value(getattr(settings, f.name)) for f in dataclasses.fields(Settings)}


def env_value(value: Any) -> str:
    """A setting's value as its variable takes it: a list comma separated.

    >>> env_value((1, 5, 20)), env_value(0.2)
    ('1,5,20', '0.2')
    """
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, for the README and ``--help``."""
    defaults = Settings()
    rows = []
    for f in dataclasses.fields(Settings):
        value = getattr(defaults, f.name)
        if f.name in {"home", "data_dir"}:
            shown = ""
        elif isinstance(value, tuple):
            shown = ",".join(str(v) for v in value)
        else:
            shown = str(value)
        rows.append((env_name(f.name), shown, DOCS[f.name]))
    return rows
