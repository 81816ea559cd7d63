"""``forecaster topics create``: the application's topics, idempotently."""

from __future__ import annotations

import argparse

from forecaster.cli_options import count, seconds
from forecaster.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("topics", help="manage the application's Kafka topics")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create", help="create bars, bars.dlq and predictions (idempotent)",
        description="Create the topics named by the settings; existing ones are left as they are.",
    )
    create.add_argument("--partitions", type=count, default=None,
                        help="partition count (default: FORECASTER_PARTITIONS, 8)")
    create.add_argument("--bootstrap", default=None, help="host:port (default: FORECASTER_BOOTSTRAP)")
    create.add_argument("--connect-timeout", type=seconds, default=10.0, metavar="S",
                        help="seconds to wait for the broker before giving up (default: 10)")
    create.set_defaults(run=run_create)


def run_create(args: argparse.Namespace, settings: Settings) -> int:
    from forecaster.kafka.topics import create_topics

    settings = settings.replace(partitions=args.partitions, bootstrap=args.bootstrap)
    for name, outcome in create_topics(settings, connect_timeout_s=args.connect_timeout).items():
        print(f"{name}: {outcome}")
    return 0
