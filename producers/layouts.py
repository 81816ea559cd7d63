"""Which column of a CSV file holds which field of a bar, told from the header alone.

Header names are compared after folding case and dropping everything but letters and digits
(``Adj Close`` -> ``adjclose``, ``trade_date`` -> ``tradedate``), against a short list of names per
field in order of preference. That covers the layouts people actually have:

- Yahoo Finance ``Date,Open,High,Low,Close,Adj Close,Volume`` (one ticker per file);
- Kaggle ``date,open,high,low,close,volume,Name`` and ``Ticker,Date,...`` (many tickers);
- TuShare ``ts_code,trade_date,...,vol``;
- Vietnamese broker exports ``code,date,...,adClose,nmVolume``;
- pandas ``to_csv`` output whose first column is the unnamed date index.

A file without a ticker column takes its ticker from ``--ticker`` or from its file name. Anything
else is mapped with ``--columns`` (:func:`parse_columns`), e.g. ``date=Datum,close=Schluss``.

Examples
--------
>>> layout = detect_layout(["date", "open", "high", "low", "close", "volume", "Name"], file_name="x.csv")
>>> layout.ticker_column, layout.volume
(6, 5)
>>> detect_layout(["", "Open", "High", "Low", "Close", "Volume"], file_name="aapl.csv.gz").ticker
'AAPL'
>>> detect_layout(["Datum", "Schluss"], file_name="dax.csv")
Traceback (most recent call last):
...
producers.layouts.LayoutError: dax.csv: cannot tell which columns hold date, open, high, low, close, \
volume; found columns: Datum, Schluss; needs date, open, high, low, close, volume (and a ticker column, \
--ticker or the file name); map them with --columns, e.g. --columns date=Datum,close=Schluss
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Names each field goes by, in order of preference, after :func:`normalise`.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "date": ("date", "tradedate", "datetime", "timestamp", "day"),
    "open": ("open", "openprice"),
    "high": ("high", "highprice"),
    "low": ("low", "lowprice"),
    "close": ("close", "closeprice", "last"),
    "volume": ("volume", "vol", "nmvolume", "totalvolume"),
    "adj_close": ("adjclose", "adjustedclose", "adclose"),
    "ticker": ("ticker", "symbol", "tscode", "code", "name", "stock"),
}
REQUIRED = ("date", "open", "high", "low", "close", "volume")
#: Header names that pandas and spreadsheets give an index column.
UNNAMED_INDEX = {"", "unnamed0", "index"}


class LayoutError(ValueError):
    """A file whose columns cannot be mapped to a bar; the message names what was found and needed."""


def normalise(name: str) -> str:
    """A header name folded for comparison: ``"Adj Close"`` -> ``"adjclose"``."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def parse_columns(text: str) -> dict[str, str]:
    """The ``--columns`` option: ``"date=Datum,close=Schluss"`` -> ``{"date": "Datum", "close": "Schluss"}``.

    >>> parse_columns("date=Datum, close=Schluss")
    {'date': 'Datum', 'close': 'Schluss'}
    >>> parse_columns("price=Kurs")
    Traceback (most recent call last):
    ...
    ValueError: --columns: unknown field 'price'; fields are date, open, high, low, close, volume, \
adj_close, ticker
    """
    mapping: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, column = part.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise ValueError(f"--columns: {part!r} is not FIELD=COLUMN")
        mapping[name.strip()] = column.strip()
    check_fields(mapping)
    return mapping


def check_fields(columns: Mapping[str, str]) -> None:
    """Raise a precise :class:`ValueError` when ``columns`` names a field a bar does not have."""
    for name in columns:
        if name not in SYNONYMS:
            raise ValueError(f"--columns: unknown field {name!r}; fields are {', '.join(SYNONYMS)}")


def ticker_from_file_name(file_name: str) -> str:
    """``"aapl.csv.gz"`` -> ``"AAPL"``: the ticker of a single-ticker file named after it."""
    name = file_name.rsplit("/", 1)[-1]
    for suffix in (".gz", ".csv", ".txt"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name.strip().upper()


@dataclass(frozen=True)
class Layout:
    """Column positions of the fields in one file's rows.

    Exactly one of ``ticker_column`` (a multi-ticker file) and ``ticker`` (the ticker of every row)
    is set.
    """

    date: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    adj_close: int | None
    ticker_column: int | None
    ticker: str | None

    @property
    def width(self) -> int:
        """Fields a row needs to reach every mapped column."""
        used = [self.date, self.open, self.high, self.low, self.close, self.volume,
                self.adj_close, self.ticker_column]
        return max(i for i in used if i is not None) + 1


def _find(header: Sequence[str], field: str, override: str | None, file_name: str) -> int | None:
    if override is not None:
        if override in header:
            return header.index(override)
        folded = [normalise(h) for h in header]
        if normalise(override) in folded:
            return folded.index(normalise(override))
        raise LayoutError(
            f"{file_name}: --columns maps {field} to {override!r}, which is not a column; "
            f"found columns: {', '.join(header)}"
        )
    folded = [normalise(h) for h in header]
    for synonym in SYNONYMS[field]:
        at = [k for k, name in enumerate(folded) if name == synonym]
        if len(at) > 1:  # which one a row's value is in would be a guess
            named = ", ".join(f"{k + 1} ({header[k]!r})" for k in at)
            raise LayoutError(f"{file_name}: {field} could be any of the columns {named}; keep one, or say "
                              f"which with --columns {field}=NAME")
        if at:
            return at[0]
    return None


def detect_layout(header: Sequence[str], *, file_name: str, ticker: str | None = None,
                  columns: Mapping[str, str] | None = None) -> Layout:
    """The :class:`Layout` of a file from its header row.

    Parameters
    ----------
    header
        The first row of the file.
    file_name
        Used in messages and, for a file without a ticker column, as the ticker.
    ticker
        The ticker of a file without a ticker column (``--ticker``); files with one keep theirs.
    columns
        Explicit ``field -> column name`` choices that win over detection (``--columns``).
    """
    columns = columns or {}
    check_fields(columns)
    found = {field: _find(header, field, columns.get(field), file_name) for field in SYNONYMS}
    if found["date"] is None and header and normalise(header[0]) in UNNAMED_INDEX:
        found["date"] = 0  # pandas writes a DatetimeIndex as an unnamed first column
    required = {field: position for field in REQUIRED if (position := found[field]) is not None}
    missing = [field for field in REQUIRED if field not in required]
    if missing:
        shown = ", ".join(repr(h) if not h.strip() else h for h in header) or "none"
        raise LayoutError(
            f"{file_name}: cannot tell which columns hold {', '.join(missing)}; found columns: {shown}; "
            f"needs {', '.join(REQUIRED)} (and a ticker column, --ticker or the file name); "
            "map them with --columns, e.g. --columns date=Datum,close=Schluss"
        )
    ticker_column = found["ticker"]
    constant = None if ticker_column is not None else (ticker or ticker_from_file_name(file_name))
    if constant == "":
        raise LayoutError(f"{file_name}: no ticker column and no ticker; pass --ticker")
    return Layout(**required, adj_close=found["adj_close"], ticker_column=ticker_column, ticker=constant)
