"""Argument types and option groups that several ``forecaster`` subcommands share.

(Kept outside :mod:`forecaster.commands`, whose every module is a subcommand.)

>>> iso_date("2013-02-08")
datetime.date(2013, 2, 8)
>>> ticker_list(" AAPL, MSFT ,")
['AAPL', 'MSFT']
"""

from __future__ import annotations

import argparse
import datetime as dt


def iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def ticker_list(text: str) -> list[str]:
    tickers = [t.strip() for t in text.split(",") if t.strip()]
    if not tickers:
        raise argparse.ArgumentTypeError("--tickers needs at least one ticker, e.g. AAPL,MSFT")
    return tickers


def add_csv_selection(parser: argparse.ArgumentParser, verb: str) -> None:
    """``--ticker --columns --tickers --start --end``: how CSV files are read and which rows are used."""
    parser.add_argument("--ticker", default=None,
                        help="ticker of files without a ticker column (default: the file name)")
    parser.add_argument("--columns", default=None, metavar="MAP",
                        help="column names for fields, e.g. date=Datum,close=Schluss,volume=Umsatz")
    parser.add_argument("--tickers", type=ticker_list, default=None, metavar="A,B",
                        help=f"{verb} only these tickers")
    parser.add_argument("--start", type=iso_date, default=None, metavar="DATE", help=f"first date {verb}")
    parser.add_argument("--end", type=iso_date, default=None, metavar="DATE", help=f"last date {verb}")
