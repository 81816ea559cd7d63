"""Why a command cannot start, said in one line with the fix: ports taken, a broker out of reach.

``forecaster.cli.main`` prints any :class:`StartupError` (and the other expected failures) as
``forecaster COMMAND: error: ...`` with exit status 2; the checks here run before a server or a
Faust worker starts, whose own failures would end in a traceback.

>>> print(unreachable("127.0.0.1:1", "Unable to bootstrap"))  # doctest: +NORMALIZE_WHITESPACE
cannot reach Kafka at 127.0.0.1:1 (Unable to bootstrap): start one with `forecaster kafka start`,
or point FORECASTER_BOOTSTRAP or --bootstrap at a running broker
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import socket
import sys
from typing import Any

from forecaster.kafka.client import kafka_python_client, kafka_python_options
from forecaster.kafka.login import refused_login
from forecaster.redaction import printable, redact
from forecaster.settings import Settings, env_name
from models.core.config import CoreConfig

# kafka-python (slow to import) loads only in the broker check: `forecaster.cli` imports
# this module for every command.


class StartupError(RuntimeError):
    """A command cannot start; the message names the cause and the fix."""


def unreachable(bootstrap: str, reason: Any) -> str:
    """The line for a broker that does not answer."""
    return (f"cannot reach Kafka at {bootstrap} ({reason}): start one with `forecaster kafka start`, "
            "or point FORECASTER_BOOTSTRAP or --bootstrap at a running broker")


def port_taken(what: str, host: str, port: int, setting: str, option: str) -> str:
    """The line for a port that something else listens on."""
    return (f"the {what} port {host}:{port} is in use (another process listens there): "
            f"pass {option} or set {setting} to a free port")


def listen(host: str, port: int, *, what: str, setting: str, option: str) -> socket.socket:
    """A listening socket on ``host:port``, for a server to serve on; StartupError when taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48):  # EADDRINUSE on Linux, macOS
            raise StartupError(port_taken(what, host, port, setting, option)) from None
        raise StartupError(f"cannot listen on {host}:{port} for the {what} ({exc.strerror}): "
                           f"pass {option} or set {setting}") from None
    return sock


def require_free_port(host: str, port: int, *, what: str, setting: str, option: str) -> None:
    """StartupError unless ``host:port`` can be bound now (for servers that bind it themselves)."""
    listen(host, port, what=what, setting=setting, option=option).close()


def require_core_settings(settings: Settings) -> None:
    """StartupError unless the forecasting core accepts the settings (ARIMA order, window, levels...).

    >>> require_core_settings(Settings(arima_order=(1, 1)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    forecaster.startup.StartupError: a setting of the forecasting core is out of range: order ... \
(set by FORECASTER_ARIMA_ORDER)
    """
    core_config(settings)


def core_config(settings: Settings, **overrides: Any) -> CoreConfig:
    """:meth:`CoreConfig.from_settings`, whose error names the variables it is about."""
    try:
        return CoreConfig.from_settings(settings, **overrides)
    except ValueError as exc:
        named = [env_name(f.metadata["setting"]) for f in dataclasses.fields(CoreConfig)
                 if "setting" in f.metadata and re.search(rf"\b{f.name}\b", str(exc))]
        where = f"set by {', '.join(named)}" if named else "see `forecaster settings`"
        raise StartupError(f"a setting of the forecasting core is out of range: {exc} ({where})") from None


#: The event loops the worker runs on (``FAUST_LOOP``); Faust's two others are deprecated or broken.
EVENT_LOOPS = ("uvloop", "aio")


def require_event_loop(settings: Settings) -> None:
    """StartupError unless the worker can run on the event loop ``FAUST_LOOP`` names. Checked before
    Faust is imported: Faust imports the loop it names at its own import, and fails there with a
    traceback.

    >>> require_event_loop(Settings(faust_loop="gevent"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    forecaster.startup.StartupError: FAUST_LOOP='gevent' is not an event loop the worker runs on: ...
    """
    if settings.faust_loop not in EVENT_LOOPS:
        raise StartupError(f"FAUST_LOOP={settings.faust_loop!r} is not an event loop the worker runs on: "
                           f"{' or '.join(EVENT_LOOPS)}")
    if settings.faust_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise StartupError("FAUST_LOOP=uvloop (the default) needs the uvloop package, which is not installed "
                           "(it has no Windows build): install it, or set FAUST_LOOP=aio")


def require_broker(settings: Settings, timeout_s: float) -> None:
    """StartupError unless the broker answers within ``timeout_s``."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    try:
        kafka_python_client(KafkaAdminClient, **kafka_python_options(settings),
                            bootstrap_timeout_ms=int(timeout_s * 1000)).close()
    except (KafkaTimeoutError, KafkaConnectionError) as exc:
        reason = f"no answer within {timeout_s:g} s: {exc}"
        raise StartupError(refused_login(settings) or unreachable(settings.bootstrap, reason)) from None


def explain(exc: BaseException, bootstrap: str | None, settings: Settings | None = None) -> str | None:
    """The one line for an expected failure, or None for a bug (which keeps its traceback).

    Kafka clients' connection errors are recognised only when their module is loaded: a command
    that never touched Kafka cannot have raised one, and importing them would slow every command.
    With ``settings`` that log in with SASL, a broker out of reach is asked whether it refused the
    login (kafka-python reports a refusal as a broker it cannot reach; see forecaster.kafka.login).
    """
    unreachable_types = tuple(getattr(module, name) for module, name in (
        (sys.modules.get("kafka.errors"), "KafkaTimeoutError"),
        (sys.modules.get("kafka.errors"), "KafkaConnectionError"),
        (sys.modules.get("aiokafka.errors"), "KafkaConnectionError"),
    ) if module is not None)
    publisher = sys.modules.get("producers.publisher")  # the replay's own "cannot reach" error
    out_of_reach = unreachable_types + ((publisher.BrokerUnreachable,) if publisher is not None else ())
    if settings is not None and out_of_reach and isinstance(exc, out_of_reach):
        refused = refused_login(settings.replace(bootstrap=bootstrap))
        if refused:
            return refused
    if unreachable_types and isinstance(exc, unreachable_types):
        return unreachable(bootstrap or "the configured bootstrap servers", exc)
    kafka_errors = sys.modules.get("kafka.errors")
    if kafka_errors is not None and isinstance(exc, kafka_errors.KafkaError):  # the broker refused
        # Redacted before it is cut and its blanks joined: a cut between a password and its "@", or a blank
        # of a configured password joined to another, would leave nothing to find the password by.
        text = " ".join(redact(str(exc)).split())  # kafka-python's text names the error: "[Error 38] ..."
        said = text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"
        return f"Kafka at {bootstrap or 'the bootstrap servers'} refused: {printable(said, 300)}"
    store_errors = tuple(getattr(module, name) for module, name in (
        (sys.modules.get("mlflow.exceptions"), "MlflowException"),
        (sys.modules.get("sqlalchemy.exc"), "SQLAlchemyError"),  # MLflow's SQL store, on a bad file
    ) if module is not None)
    if store_errors and isinstance(exc, store_errors):
        # MLflow quotes the URI: redacted before the cut, which may fall between its password and its "@".
        cause = printable(" ".join(redact(str(exc)).split()), 300)
        return (f"the MLflow store cannot be used ({cause}): fix the URI that `forecaster settings` shows "
                "in force (FORECASTER_MLFLOW_TRACKING_URI, else MLFLOW_TRACKING_URI and MLFLOW_REGISTRY_URI)")
    if isinstance(exc, ValueError | RuntimeError | OSError):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.partition(".")[0] not in _OWN_PACKAGES:
        # A driver a URI asks for (MLflow on PostgreSQL: psycopg), never installed with the project.
        return (f"the Python package {exc.name!r} is not installed, and what was asked needs it: install it "
                "in this environment, or use a setting that does not (see `forecaster settings`)")
    return None


#: The project's own packages: one of them missing is a broken install, whose traceback says where.
_OWN_PACKAGES = frozenset({"forecaster", "models", "producers", "stream_app", "api"})

