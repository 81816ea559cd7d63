"""``forecaster kafka start|stop|status``: the local single-node Apache Kafka broker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from forecaster.cli_options import port
from forecaster.settings import Settings, env_name


def default_data_dir(settings: Settings) -> Path:
    return Path(settings.home) / "kafka"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "kafka", help="run a local single-node Apache Kafka broker (KRaft)",
        description="Run a real Apache Kafka 3.9 broker resolved from Maven Central. "
        "Needs Java 17+ and Maven.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser("start", help="start the broker in the background")
    start.add_argument("--port", type=port, default=9092, help="client port (default: 9092)")
    start.add_argument("--data-dir", type=Path, default=None,
                       help="broker state; kept across restarts (default: $FORECASTER_HOME/kafka)")
    start.add_argument("--sasl-ssl", action="store_true",
                       help="require TLS and a SCRAM login on the client port: the user is "
                       "FORECASTER_SASL_USERNAME with FORECASTER_SASL_PASSWORD (mechanism: "
                       "FORECASTER_SASL_MECHANISM, default SCRAM-SHA-512), created when the data folder is "
                       "first formatted; the self-signed certificate that clients trust "
                       "(FORECASTER_SSL_CAFILE) is DATA_DIR/tls/ca.pem")
    start.set_defaults(run=run_start)
    for name, helptext, func in (("stop", "stop the broker cleanly", run_stop),
                                 ("status", "tell whether the broker runs and answers", run_status)):
        action = actions.add_parser(name, help=helptext)
        action.add_argument("--data-dir", type=Path, default=None,
                            help="broker state folder (default: $FORECASTER_HOME/kafka)")
        action.set_defaults(run=func)


def run_start(args: argparse.Namespace, settings: Settings) -> int:
    from forecaster.kafka.broker import BrokerSecurity, LocalBroker, self_signed_keystore

    broker = LocalBroker(args.data_dir or default_data_dir(settings))
    security = None
    if args.sasl_ssl:
        if not (settings.sasl_username and settings.sasl_password):
            raise ValueError("--sasl-ssl needs the user that the broker creates and clients log in as: "
                             f"set {env_name('sasl_username')} and {env_name('sasl_password')}")
        keystore, password, cafile = self_signed_keystore(broker.data_dir / "tls")
        users = {settings.sasl_username: settings.sasl_password}
        security = BrokerSecurity(keystore, password, cafile, users,
                                  mechanism=settings.sasl_mechanism or "SCRAM-SHA-512")
    info = broker.start(port=args.port, security=security)
    print(info.bootstrap)
    if security is not None:
        print(f"requires SASL_SSL: clients set {env_name('security_protocol')}=SASL_SSL, "
              f"{env_name('sasl_mechanism')}={security.mechanism}, "
              f"{env_name('ssl_cafile')}={security.cafile} and log in as {settings.sasl_username!r}",
              file=sys.stderr)
    return 0


def run_stop(args: argparse.Namespace, settings: Settings) -> int:
    from forecaster.kafka.broker import LocalBroker

    broker = LocalBroker(args.data_dir or default_data_dir(settings))
    print("stopped" if broker.stop() else "not running")
    return 0


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    from forecaster.kafka.broker import LocalBroker, broker_answers
    from forecaster.kafka.client import kafka_python_options

    broker = LocalBroker(args.data_dir or default_data_dir(settings))
    info = broker.info()
    if info is None or not broker.running():
        print(f"not running ({broker.data_dir})")
        return 1
    # A broker that requires SASL_SSL answers clients that log in: the security settings' user.
    options = kafka_python_options(settings.replace(bootstrap=info.bootstrap))
    options.pop("bootstrap_servers")
    answers = broker_answers(info.bootstrap, options=options)
    print(f"{'running' if answers else 'not answering'}: {info.bootstrap} "
          f"(PID {info.pid}, data {info.data_dir})")
    return 0 if answers else 1
