"""``forecaster demo``: run the whole pipeline end to end on a local broker (see :mod:`forecaster.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from forecaster.cli_options import port, report_file
from forecaster.settings import Settings

DEFAULT_DATA = "bokeh-stocks.csv.gz"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo", help="run the whole pipeline end to end on a local Kafka broker",
        description="Start (or reuse) a local Kafka broker, create the topics, train and promote a small "
        "champion when the MLflow store has none, start a worker, replay the sample data, show the progress, "
        "then print per-ticker errors against the naive forecast and write the report picture. "
        "Ctrl-C stops everything cleanly.",
    )
    parser.add_argument("--data", type=Path, action="append", default=None,
                        help=f"CSV file or folder to replay (repeatable; default: {DEFAULT_DATA} of the "
                        "sample data, FORECASTER_DATA_DIR)")
    parser.add_argument("--tickers", default=None, help="only these tickers, comma separated")
    parser.add_argument("--quick", action="store_true",
                        help="train an ARIMA champion instead of XGBoost (seconds instead of a minute)")
    parser.add_argument("--port", type=port, default=9092, help="port of the local broker (default: 9092)")
    parser.add_argument("--report", type=report_file, default=None,
                        help="report picture to write (default: $FORECASTER_HOME/demo-report.png)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from forecaster.demo import DemoError, run_demo

    data = args.data or [Path(settings.data_dir) / DEFAULT_DATA]
    tickers = [t.strip() for t in args.tickers.split(",") if t.strip()] if args.tickers else None
    report = args.report or Path(settings.home) / "demo-report.png"
    try:
        run_demo(settings, data=data, tickers=tickers, quick=args.quick, port=args.port, report=report)
    except DemoError as exc:
        raise RuntimeError(str(exc)) from None
    except KeyboardInterrupt:
        # Everything the demo started was stopped on the way out; an interrupted demo is a normal end.
        print("\ndemo interrupted: worker and broker stopped")
    return 0
