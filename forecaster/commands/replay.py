"""``forecaster replay PATH...``: historical OHLCV CSV files into Kafka, validated, nothing lost."""

from __future__ import annotations

import argparse
import gc
import sys

from forecaster.cli_options import add_csv_selection, add_format, print_summary, processes, seconds
from forecaster.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "replay", help="publish historical daily bars from CSV files to Kafka",
        description="Read CSV files (plain or .gz, or folders of them), validate every row, and publish "
        "the bars in date order keyed by ticker; rejected rows go to the dead-letter topic with their "
        "reason. Recognises Yahoo, Kaggle, TuShare, Vietnamese broker and pandas layouts.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="CSV file, .csv.gz file or folder")
    parser.add_argument("--topic", default=None, help="topic of the bars (default: FORECASTER_TOPIC_BARS)")
    add_csv_selection(parser, "replayed")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, default=None, metavar="BARS_PER_S", help="bars per second")
    pace.add_argument("--speed", type=float, default=None, metavar="DAYS_PER_S",
                      help="trading days per second; a day's bars go out together")
    pace.add_argument("--max", action="store_true", help="no pacing (the default)")
    parser.add_argument("--processes", type=processes, default=None, metavar="N",
                        help="producer processes of an unpaced replay, each publishing a share of the "
                        "tickers (default: FORECASTER_REPLAY_PROCESSES; 0: one per CPU for long replays)")
    parser.add_argument("--bootstrap", default=None, metavar="HOST:PORT",
                        help="Kafka bootstrap servers (default: FORECASTER_BOOTSTRAP)")
    parser.add_argument("--connect-timeout", type=seconds, default=10.0, metavar="S",
                        help="seconds to wait for the broker before giving up (default: 10)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")
    add_format(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from producers.layouts import parse_columns
    from producers.pacing import Pacing
    from producers.readers import read_csv_bars
    from producers.replay import ReplayError, replay

    settings = settings.replace(bootstrap=args.bootstrap)
    pacing = Pacing(rate=args.rate, speed=args.speed)
    result = read_csv_bars(args.paths, ticker=args.ticker,
                           columns=parse_columns(args.columns) if args.columns else None,
                           tickers=args.tickers, start=args.start, end=args.end)
    if not result.bars and not result.dead_letters_total:  # rejected rows are sent, as dead letters
        raise ValueError(f"nothing to replay in {', '.join(map(str, args.paths))}: {result.rows_read} rows "
                         f"read, {result.filtered} of them not selected by --tickers, --start or --end")
    # The read stays in memory until the replay ends: out of the collector's full passes, which are
    # long over a big file's bars and would stall a paced feed each time (docs/benchmarks.md,
    # "Figures behind comments"), and would dirty every page producer processes share after their fork.
    gc.freeze()
    try:
        summary = replay(result, settings, topic=args.topic, pacing=pacing, progress=args.progress,
                         connect_timeout_s=args.connect_timeout, processes=args.processes)
    except ReplayError as error:
        # What was delivered, before the one-line error: on stderr as text, on stdout as JSON.
        print_summary(args, "\n".join(error.summary.lines()), error.summary,
                      out=sys.stdout if args.format == "json" else sys.stderr)
        raise
    print_summary(args, "\n".join(summary.lines()), summary)
    return 0
