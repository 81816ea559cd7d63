"""``forecaster kafka start|stop|status``: the local single-node Apache Kafka broker."""

from __future__ import annotations

import argparse
from pathlib import Path

from forecaster.settings import Settings


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
    start.add_argument("--port", type=int, default=9092, help="client port (default: 9092)")
    start.add_argument("--data-dir", type=Path, default=None,
                       help="broker state; kept across restarts (default: $FORECASTER_HOME/kafka)")
    start.set_defaults(run=run_start)
    for name, helptext, func in (("stop", "stop the broker cleanly", run_stop),
                                 ("status", "tell whether the broker runs and answers", run_status)):
        action = actions.add_parser(name, help=helptext)
        action.add_argument("--data-dir", type=Path, default=None,
                            help="broker state folder (default: $FORECASTER_HOME/kafka)")
        action.set_defaults(run=func)


def run_start(args: argparse.Namespace, settings: Settings) -> int:
    from forecaster.kafka.broker import LocalBroker

    broker = LocalBroker(args.data_dir or default_data_dir(settings))
    info = broker.start(port=args.port)
    print(info.bootstrap)
    return 0


def run_stop(args: argparse.Namespace, settings: Settings) -> int:
    from forecaster.kafka.broker import LocalBroker

    broker = LocalBroker(args.data_dir or default_data_dir(settings))
    print("stopped" if broker.stop() else "not running")
    return 0


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    from forecaster.kafka.broker import LocalBroker, broker_answers

    broker = LocalBroker(args.data_dir or default_data_dir(settings))
    info = broker.info()
    if info is None or not broker.running():
        print(f"not running ({broker.data_dir})")
        return 1
    answers = broker_answers(info.bootstrap)
    print(f"{'running' if answers else 'not answering'}: {info.bootstrap} "
          f"(PID {info.pid}, data {info.data_dir})")
    return 0 if answers else 1
