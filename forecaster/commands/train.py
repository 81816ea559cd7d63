"""``forecaster train PATH... --model NAME``: fit a model family, judge it against naive, register it."""

from __future__ import annotations

import argparse
import json
import sys

from forecaster.cli_options import add_format, iso_date, jsonable, print_summary
from forecaster.settings import Settings
from models.families import FAMILIES  # numpy only: TensorFlow loads when a network is built


def _params(text: str) -> dict:
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--params is not JSON: {exc}") from None
    if not isinstance(params, dict):
        raise argparse.ArgumentTypeError("--params must be a JSON object, e.g. '{\"units\": 32}'")
    return params


def _experiment(text: str) -> str:
    # MLflow refuses a blank name with an error the CLI could only take for a store it cannot use.
    if not text.strip():
        raise argparse.ArgumentTypeError("an experiment needs a name")
    return text


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train", help="train a model family, evaluate it against naive, log and register it in MLflow",
        description="Read CSV files, make the streaming core's causal features, split by date into "
        "train / validation / test, fit the model on the training period, score it and the naive "
        "forecast on the test period, and log everything to MLflow (parameters, metrics, plots, the "
        "feature reference for drift, the model in its native flavour) as a new version of "
        "FORECASTER_MODEL_NAME. Promote it with `forecaster promote`.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="CSV file, .csv.gz file or folder")
    parser.add_argument("--model", required=True, choices=sorted(FAMILIES), help="model family")
    parser.add_argument("--tickers", nargs="+", default=None, metavar="TICKER",
                        help="train on these tickers only (space or comma separated)")
    parser.add_argument("--experiment", type=_experiment, default="forecaster",
                        help="MLflow experiment (default: forecaster)")
    parser.add_argument("--test-start", type=iso_date, default=None, metavar="DATE",
                        help="first target date of the test period (default: the last --test-days dates)")
    parser.add_argument("--test-days", type=int, default=None, metavar="N",
                        help="target dates in the test period "
                        "(default: 252; with --test-start: all after it)")
    parser.add_argument("--validation-fraction", type=float, default=0.1, metavar="F",
                        help="share of the pre-test dates used for early stopping (default: 0.1)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the neural network, if any")
    parser.add_argument("--params", type=_params, default=None, metavar="JSON",
                        help="hyper-parameters overriding the family's defaults, e.g. '{\"lookback\": 10}'")
    add_format(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from models.training import train
    from producers.readers import read_csv_bars

    tickers = None if args.tickers is None else [t for arg in args.tickers for t in arg.split(",") if t]
    result = read_csv_bars(args.paths, tickers=tickers, keep_dead_letters=0)  # counted, never shown
    if result.dead_letters_total:
        rejected = ", ".join(f"{reason} {count}" for reason, count in result.rejected_by_reason().items())
        print(f"read {len(result.bars)} bars; rejected rows: {rejected}", file=sys.stderr)
    if not result.bars:
        selected = f"; {result.filtered} of another ticker than {', '.join(tickers)}" if tickers else ""
        raise ValueError(f"no valid bars to train on ({result.rows_read} rows read, "
                         f"{result.dead_letters_total} rejected{selected})")
    test_days = args.test_days if args.test_days is not None else (None if args.test_start else 252)
    outcome = train(result.bars, args.model, settings, experiment=args.experiment, tickers=tickers,
                    epochs=args.epochs, params=args.params, test_start=args.test_start, test_days=test_days,
                    validation_fraction=args.validation_fraction)
    text = (f"{outcome.summary()}\nregistered {settings.model_name} version {outcome.version}; "
            f"promote it with: forecaster promote {settings.model_name} --version {outcome.version}")
    print_summary(args, text, {"model_name": settings.model_name, **jsonable(outcome)})
    return 0
