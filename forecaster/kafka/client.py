"""Kafka client options shared by every client of the system.

The security settings (TLS, SASL) come from :class:`~forecaster.settings.Settings` and are passed
through to every client: kafka-python (replay producer, admin, ``tail``), aiokafka (through Faust)
and the tests. Each library spells the options its own way; the spelling lives here, once.

Examples
--------
>>> import tempfile
>>> from forecaster.settings import Settings
>>> ca = tempfile.NamedTemporaryFile(suffix=".pem")
>>> s = Settings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u",
...              sasl_password="p", ssl_cafile=ca.name)
>>> opts = kafka_python_options(s)
>>> opts["security_protocol"], opts["sasl_plain_username"], opts["ssl_cafile"] == ca.name
('SASL_SSL', 'u', True)
>>> kafka_python_options(Settings())
{'bootstrap_servers': ['127.0.0.1:9092'], 'security_protocol': 'PLAINTEXT'}
>>> kafka_python_options(Settings(security_protocol="SSL", ssl_cafile="/nowhere/ca.pem"))
Traceback (most recent call last):
...
ValueError: FORECASTER_SSL_CAFILE='/nowhere/ca.pem' is not a file
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from forecaster.redaction import printable
from forecaster.settings import Settings, env_name

Client = TypeVar("Client")

# Faust loads only where its credentials are made: the kafka-python users of this module need none.

PROTOCOLS = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
#: The SASL mechanisms both Kafka clients (kafka-python, aiokafka) speak.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER")


def bootstrap_list(bootstrap: str) -> list[str]:
    """``"a:9092, b:9092"`` -> ``["a:9092", "b:9092"]``.

    >>> bootstrap_list("127.0.0.1:abc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the bootstrap server '127.0.0.1:abc' is not HOST:PORT, a port from 1 to 65535 ...
    """
    servers = [part.strip() for part in bootstrap.split(",") if part.strip()]
    if not servers:
        raise ValueError("the bootstrap server list is empty; set FORECASTER_BOOTSTRAP")
    for server in servers:
        _, colon, port = server.rpartition(":")
        if colon and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"the bootstrap server {printable(server, 100)!r} is not HOST:PORT, a port from "
                             "1 to 65535 (FORECASTER_BOOTSTRAP)")
    return servers


def _security(settings: Settings) -> dict[str, Any]:
    protocol = settings.security_protocol.upper()
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"FORECASTER_SECURITY_PROTOCOL={settings.security_protocol!r} is not one of "
            f"{', '.join(sorted(PROTOCOLS))}"
        )
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL"):
        if not settings.sasl_mechanism:
            raise ValueError(f"{protocol} needs FORECASTER_SASL_MECHANISM")
        if settings.sasl_mechanism.upper() not in SASL_MECHANISMS:
            raise ValueError(f"FORECASTER_SASL_MECHANISM={settings.sasl_mechanism!r} is not one of "
                             f"{', '.join(SASL_MECHANISMS)}")
        options["sasl_mechanism"] = settings.sasl_mechanism.upper()
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password
    if protocol.endswith("SSL"):
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(settings, name):
                # A file that is not there fails the TLS handshake, which the clients report as a
                # broker they cannot reach.
                if not Path(getattr(settings, name)).is_file():
                    raise ValueError(f"{env_name(name)}={getattr(settings, name)!r} is not a file")
                options[name] = getattr(settings, name)
    return options


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's producer, consumer and admin client."""
    return {"bootstrap_servers": bootstrap_list(settings.bootstrap), **_security(settings)}


def kafka_python_client(client_class: Callable[..., Client], *args: Any, **options: Any) -> Client:
    """``client_class(*args, **options)``, a kafka-python consumer, producer or admin client, whose
    network thread and sockets are closed when the constructor raises.

    kafka-python 3 starts a client's network thread before it reaches the broker, and a constructor
    that cannot reach it raises with no client to close: each attempt of a caller that retries (the
    API's predictions reader, a wait for a broker) left a thread and four descriptors behind.
    """
    from kafka.net.compat import KafkaNetClient

    started: list[KafkaNetClient] = []

    def network_client(**config: Any) -> KafkaNetClient:
        started.append(KafkaNetClient(**config))
        return started[-1]

    try:
        return client_class(*args, **options, kafka_client=network_client)
    except BaseException:
        for client in started:
            client.close()
        raise


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients (same names, but TLS goes through an SSL context)."""
    options = _security(settings)
    cafile = options.pop("ssl_cafile", None)
    certfile = options.pop("ssl_certfile", None)
    keyfile = options.pop("ssl_keyfile", None)
    if options["security_protocol"].endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(cafile=cafile, certfile=certfile, keyfile=keyfile)
    return {"bootstrap_servers": ",".join(bootstrap_list(settings.bootstrap)), **options}


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for the security settings (None for PLAINTEXT)."""
    import faust

    options = aiokafka_options(settings)
    protocol = options["security_protocol"]
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return faust.SASLCredentials(
        username=options["sasl_plain_username"], password=options["sasl_plain_password"],
        mechanism=options["sasl_mechanism"], ssl_context=options.get("ssl_context"),
    )
