"""Argument types and option groups that several ``forecaster`` subcommands share.

(Kept outside :mod:`forecaster.commands`, whose every module is a subcommand.)

>>> iso_date("2013-02-08")
datetime.date(2013, 2, 8)
>>> ticker_list(" AAPL, MSFT ,")
['AAPL', 'MSFT']
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import sys
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, TextIO

import numpy as np

from forecaster.redaction import redact
from forecaster.settings import MAX_PROCESSES, MAX_SECONDS

# orjson loads only when a summary is printed as JSON: `forecaster --help` imports this module.


def iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def seconds(text: str) -> float:
    """A duration of a command-line option: a positive number of seconds, up to
    :data:`~forecaster.settings.MAX_SECONDS` (the Kafka clients take milliseconds as 32-bit integers).

    >>> seconds("2.5")
    2.5
    >>> seconds("1e308")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '1e308' is not a positive number of seconds up to 1,000,000
    """
    return positive(text, "seconds", MAX_SECONDS)


def positive(text: str, unit: str, most: float) -> float:
    """A number of ``unit`` of a command-line option: more than 0, at most ``most`` (NaN refused)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= most:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of {unit} up to {most:,}")
    return value


def port(text: str) -> int:
    """A TCP port of a command-line option: 0 (any free one) to 65535."""
    if not (text.isascii() and text.isdigit() and int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0 to 65535)")
    return int(text)


def processes(text: str) -> int:
    """A number of processes of a command-line option: 0 (one per CPU) to
    :data:`~forecaster.settings.MAX_PROCESSES`.

    >>> processes("4")
    4
    >>> processes("1000")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: '1000' is not a number of processes from 0 (one per CPU) to 256
    """
    if not (text.isascii() and text.isdigit() and int(text) <= MAX_PROCESSES):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes from 0 (one per CPU) to "
                                         f"{MAX_PROCESSES}")
    return int(text)


def count(text: str) -> int:
    """A positive whole number of a command-line option, at most Kafka's 32-bit counts."""
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 2**31):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 2,147,483,647")
    return int(text)


def output_file(text: str) -> Path:
    """A file a command writes, checked before its work: not a folder, in a folder that exists."""
    path = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("an empty path names no file to write")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file to write")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder of {text!r} does not exist")
    return path


def report_file(text: str) -> Path:
    """:func:`output_file` of a chart: ``.html`` or ``.png``."""
    path = output_file(text)
    if path.suffix.lower() not in (".html", ".png"):
        raise argparse.ArgumentTypeError(f"{text!r} does not end in .html or .png")
    return path


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


def add_format(parser: argparse.ArgumentParser) -> None:
    """``--format text|json``: the closing summary for people, or as one JSON object for programs."""
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="summary as text, or as one JSON object on stdout (default: text)")


def print_summary(args: argparse.Namespace, text: str, summary: Any, out: TextIO | None = None) -> None:
    """Print ``text``, or with ``--format json`` the JSON of ``summary`` (see :func:`jsonable`); the
    credentials of any URI in it are hidden."""
    import orjson

    out = out or sys.stdout
    # JSON's texts are redacted one by one: a secret replaced across its syntax (a number, a quote)
    # would make it no JSON.
    shown = orjson.dumps(_redacted(jsonable(summary))).decode() if args.format == "json" else redact(text)
    print(shown, file=out, flush=True)


def _redacted(value: Any) -> Any:
    """``value`` (JSON types) with :func:`~forecaster.redaction.redact` applied to each of its texts."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return value


#: What :func:`jsonable` leaves out: per-sample arrays and live objects (a fitted model) are data,
#: not a summary.
_OMITTED = object()


def jsonable(value: Any) -> Any:
    """``value`` as JSON types: dataclasses become objects of their fields and public properties,
    dates ISO strings, paths strings, NaN and infinities null; arrays and other objects are left out.

    >>> @dataclasses.dataclass
    ... class Run:
    ...     day: dt.date
    ...     errors: dict
    ...     closes: np.ndarray
    ...     @property
    ...     def worst(self) -> float:
    ...         return max(self.errors.values())
    >>> jsonable(Run(dt.date(2024, 1, 5), {"mae": np.float64(0.5), "mape": math.nan}, np.zeros(3)))
    {'day': '2024-01-05', 'errors': {'mae': 0.5, 'mape': None}, 'worst': 0.5}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value)]
        names += [name for name, member in vars(type(value)).items()
                  if isinstance(member, property) and not name.startswith("_")]
        return _object({name: getattr(value, name) for name in names})
    if isinstance(value, Mapping):
        return _object(value)
    if isinstance(value, list | tuple):
        return [item for item in map(jsonable, value) if item is not _OMITTED]
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    return _OMITTED


def _object(items: Mapping[Any, Any]) -> dict[str, Any]:
    converted = {str(key): jsonable(item) for key, item in items.items()}
    return {key: item for key, item in converted.items() if item is not _OMITTED}
