"""``forecaster promote NAME``: move the ``champion`` alias to a version only if it wins, and say why.

``--from-shadow`` judges a challenger on its live record instead of a test window: its scores on
``predictions.shadow`` against the champion's on ``predictions``
(:func:`models.registry.promote_from_shadow`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from forecaster.cli_options import add_format, count, print_summary, seconds
from forecaster.settings import Settings
from models.shadow import ALPHA, CHALLENGER, MIN_DAYS


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "promote", help="make a registered version the champion if it beats naive and the champion",
        description="Score the candidate version, the current champion and the naive forecast on the "
        "candidate's test window, per ticker; move NAME@champion to the candidate only if its relative MAE "
        "(the geometric mean over tickers of MAE / naive MAE, which no ticker's price level decides) is "
        "below 1 and below the champion's (and, with --significance, the panel Diebold-Mariano test "
        "against naive agrees). Prints on how many tickers the candidate wins. With --from-shadow, judge "
        "the version that a challenger alias names on its live scores against the champion's instead. "
        "Exit status: 0 promoted, 1 not promoted (nothing changed).",
    )
    parser.add_argument("name", metavar="NAME", help="registered model name (the worker serves "
                        "FORECASTER_MODEL_NAME, default next-close)")
    parser.add_argument("--version", type=count, default=None, metavar="N",
                        help="candidate version (default: the latest)")
    parser.add_argument("--significance", type=float, default=None, metavar="ALPHA",
                        help="also require a panel Diebold-Mariano p-value against naive below ALPHA "
                        "(losses scaled per ticker, averaged per date)")
    parser.add_argument("--from-shadow", action="store_true",
                        help="judge the challenger (--alias) on its scores in FORECASTER_TOPIC_SHADOW "
                        "against the champion's in FORECASTER_TOPIC_PREDICTIONS on the same ticker-days: "
                        "promote it if its relative MAE is below 1 and the panel Diebold-Mariano test says "
                        "it is better "
                        f"(one-sided p < {ALPHA}); the evidence is logged to MLflow")
    parser.add_argument("--alias", default=CHALLENGER, help=f"with --from-shadow: the challenger's alias "
                        f"(default: {CHALLENGER})")
    parser.add_argument("--min-days", type=count, default=MIN_DAYS, metavar="N",
                        help="with --from-shadow: fewest days of paired scores to decide on "
                        f"(default: {MIN_DAYS})")
    parser.add_argument("--connect-timeout", type=seconds, default=10.0, metavar="S",
                        help="with --from-shadow: seconds to wait for the broker before giving up "
                        "(default: 10)")
    add_format(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from models.registry import promote

    if args.from_shadow:
        return _from_shadow(args, settings.replace(model_name=args.name))
    version = None if args.version is None else str(args.version)
    decision = promote(settings, args.name, version, significance=args.significance)
    print_summary(args, decision.summary(), decision)
    return 0 if decision.promoted else 1


def _from_shadow(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from forecaster.kafka.reading import read_to_end
    from forecaster.startup import require_broker
    from models.registry import promote_from_shadow

    require_broker(settings, args.connect_timeout)  # reading a topic would wait its minute of silence

    def scores(topic: str) -> Iterator[dict]:
        for *_, value in read_to_end(settings, topic):
            if value is None:
                continue
            try:
                record = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue  # not a record of the worker's: nothing to pair
            if isinstance(record, dict) and record.get("record_type") == "score":
                yield record

    decision = promote_from_shadow(settings, args.alias, lambda: scores(settings.topic_predictions),
                                   lambda: scores(settings.topic_shadow), min_days=args.min_days)
    print_summary(args, decision.summary(), decision)
    if not decision.promoted:
        print(f"forecaster promote: not promoted: {'; '.join(decision.reasons)}", file=sys.stderr)
    return 0 if decision.promoted else 1
