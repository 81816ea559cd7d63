"""Whether the brokers refuse the configured SASL login: the cause behind an "unreachable" broker.

kafka-python 3.0.12 (the latest release) reports a wrong password as a broker it cannot reach.
The broker answers the last ``SaslAuthenticate`` request with the refusal and closes the
connection at once, so both usually arrive in one read, and the released transport
(``kafka.net.transport.KafkaTCPTransport._read_from_sock``) drops the bytes of a read that ends
with a disconnection; its development branch passes them on first. Even given the refusal, the
release's bootstrap retries every failed connection until its timeout, so the caller gets
"Unable to bootstrap" after ``bootstrap_timeout_ms``. aiokafka reads the refusal and raises it,
so when a kafka-python client cannot bootstrap with SASL settings, :func:`refused_login` asks
the broker once more with one aiokafka connection.

>>> from forecaster.settings import Settings
>>> refused_login(Settings()) is None  # no SASL: nothing to ask
True
"""

from __future__ import annotations

import asyncio

from forecaster.kafka.client import aiokafka_options, bootstrap_list
from forecaster.settings import Settings, env_name

# aiokafka loads only when a login is checked: the check runs after a failure, never on a good path.


def refused_login(settings: Settings, timeout_s: float = 10.0) -> str | None:
    """The line that says the first bootstrap server refused the SASL login, with the settings to fix;
    None when the settings use no SASL, or the login succeeds, or the server cannot be asked."""
    if not settings.security_protocol.upper().startswith("SASL"):
        return None
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

    server = bootstrap_list(settings.bootstrap)[0]
    host, _, port = server.rpartition(":")
    options = aiokafka_options(settings)
    options.pop("bootstrap_servers")

    async def login() -> None:
        conn = await create_conn(host.strip("[]"), int(port), request_timeout_ms=int(timeout_s * 1000),
                                 **options)
        conn.close()

    try:
        asyncio.run(asyncio.wait_for(login(), timeout_s))
    except (SaslAuthenticationFailed, UnsupportedSaslMechanismError) as refusal:
        names = [env_name(name) for name in ("sasl_username", "sasl_password", "sasl_mechanism")]
        return (f"Kafka at {server} refused the SASL login of user {settings.sasl_username!r} ({refusal}): "
                f"fix {names[0]} and {names[1]} (or {names[2]})")
    except (KafkaError, OSError, ValueError, TimeoutError, RuntimeError):
        return None  # RuntimeError also: asyncio.run called inside a running event loop
    return None
