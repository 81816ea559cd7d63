"""``forecaster promote NAME``: move the ``champion`` alias to a version only if it wins, and say why."""

from __future__ import annotations

import argparse

from forecaster.cli_options import add_format, print_summary
from forecaster.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "promote", help="make a registered version the champion if it beats naive and the champion",
        description="Score the candidate version, the current champion and the naive forecast on the "
        "candidate's test window, per ticker; move NAME@champion to the candidate only if its relative MAE "
        "(the geometric mean over tickers of MAE / naive MAE, which no ticker's price level decides) is "
        "below 1 and below the champion's (and, with --significance, the panel Diebold-Mariano test "
        "against naive agrees). Prints on how many tickers the candidate wins. Exit status: 0 "
        "promoted, 1 not promoted (nothing changed).",
    )
    parser.add_argument("name", metavar="NAME", help="registered model name (the worker serves "
                        "FORECASTER_MODEL_NAME, default next-close)")
    parser.add_argument("--version", default=None, help="candidate version (default: the latest)")
    parser.add_argument("--significance", type=float, default=None, metavar="ALPHA",
                        help="also require a panel Diebold-Mariano p-value against naive below ALPHA "
                        "(losses scaled per ticker, averaged per date)")
    add_format(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from models.registry import promote

    decision = promote(settings, args.name, args.version, significance=args.significance)
    print_summary(args, decision.summary(), decision)
    return 0 if decision.promoted else 1
