"""``forecaster report PREDS.csv | --prometheus URL``: the picture of a backtest or of the stream.

From a backtest file, for one ticker, it draws the actual close with the predicted close and its
interval bands, the rolling absolute error of the model against the naive forecast's, and the
rolling coverage of each interval against its nominal level (:func:`forecaster.report.render`).
The input is the file ``forecaster backtest --out`` writes; the backtest's ``--report`` and the demo
draw their records with :mod:`forecaster.report` directly. From Prometheus, see
:mod:`forecaster.prometheus_report`. PNG, or HTML with the PNG inside.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from forecaster.cli_options import positive, report_file
from forecaster.redaction import printable
from forecaster.report import LAST, render
from forecaster.settings import Settings

_TEXT_FIELDS = {"ticker", "as_of", "target_date", "actual_date", "model", "model_version", "vol_regime"}
#: The most --minutes drawn from Prometheus, which answers at most 11,000 points a series: 916 minutes
#: at the 5 s step of :func:`forecaster.prometheus_report.render_prometheus`.
MAX_MINUTES = 900


def minutes(text: str) -> float:
    """``--minutes``: a positive number of minutes, up to :data:`MAX_MINUTES`.

    >>> minutes("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 'nan' is not a positive number of minutes up to 900
    """
    return positive(text, "minutes", MAX_MINUTES)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report", help="draw predictions without Grafana: from a backtest file or from Prometheus",
        description="Draw the predictions written by `forecaster backtest --out` for one ticker: actual "
        "and predicted close with the interval bands, the rolling error against the naive forecast's "
        "and the rolling interval coverage. Or, with --prometheus, what a Prometheus server scraped from "
        "the workers: closes, rolling error against naive, and the feature drift scores. PNG, or HTML "
        "with the PNG embedded.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("predictions", type=Path, nargs="?", metavar="PREDS.csv",
                        help="output of backtest --out")
    source.add_argument("--prometheus", metavar="URL", help="a Prometheus server scraping the workers")
    parser.add_argument("--out", type=report_file, required=True, metavar="FILE.html|.png",
                        help="file to write")
    parser.add_argument("--ticker", default=None,
                        help="ticker to draw (default: the one with most predictions)")
    parser.add_argument("--last", type=int, default=LAST, metavar="N",
                        help=f"draw the ticker's last N predictions, 0 for all (default: {LAST})")
    parser.add_argument("--minutes", type=minutes, default=60.0,
                        help=f"with --prometheus: the time drawn, in minutes, at most {MAX_MINUTES} "
                        "(default: 60)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.prometheus is not None:  # an empty URL is refused there, not taken for no --prometheus
        # urllib's HTTP client loads only here, not with every `forecaster --help` (see forecaster.cli).
        from forecaster.prometheus_report import render_prometheus

        ticker = render_prometheus(args.prometheus, args.out, ticker=args.ticker, minutes=args.minutes,
                                   psi_threshold=settings.psi_threshold)
    else:
        ticker = render(read_rows(args.predictions), args.out, ticker=args.ticker, last=args.last)
    print(f"wrote {args.out} ({ticker})")
    return 0


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``backtest --out`` file with numbers, booleans and empty cells (None) restored.

    Raises :class:`ValueError` naming the file (and the line) when it is not one.
    """
    expected = "expected a `forecaster backtest --out` file"
    rows: list[dict[str, Any]] = []
    try:
        # utf-8-sig: a file saved again by a spreadsheet starts with a byte order mark.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not {"ticker", "predicted_close", "actual_close"} <= set(reader.fieldnames or ()):
                raise ValueError(f"{path} holds no predictions ({expected})")
            for row in reader:
                if None in row or None in row.values():  # DictReader's marks of a row too long or short
                    raise ValueError(f"{path}:{reader.line_num}: not as many fields as the header "
                                     f"({expected})")
                try:
                    rows.append({k: _value(k, v) for k, v in row.items()})
                except ValueError as error:  # a cell that is no number
                    reason = printable(str(error))
                    raise ValueError(f"{path}:{reader.line_num}: {reason} ({expected})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text ({expected})") from None
    except csv.Error as error:
        raise ValueError(f"{path} cannot be read as CSV: {error} ({expected})") from None
    return rows


def _value(key: str, text: str) -> Any:
    if text == "":
        return None
    if key in _TEXT_FIELDS:
        return text
    if key == "warmup":
        return text == "True"
    return float(text)


