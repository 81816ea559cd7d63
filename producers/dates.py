"""Trading dates as the files people have spell them.

Five spellings are recognised:

- ISO ``YYYY-MM-DD``, optionally followed by a time (most exports, Kaggle, pandas' ``to_csv``);
- US ``M/D/YYYY``, optionally followed by a time (Yahoo Finance and spreadsheets saved in the US);
- day-first ``D/M/YYYY``, likewise (spreadsheets saved in most of Europe, Asia and Latin America);
- ``D.M.YYYY``, always day first (German, Swiss, Russian exports);
- ``YYYYMMDD`` as eight digits (TuShare's ``trade_date``).

``3/4/2013`` is the 4th of March in one order and the 3rd of April in the other, so the order is a
file's, not a value's: :func:`is_day_first` reads it off a file's dates (a day above 12 shows where the
day is), and the reader parses the whole file that way. The range check is the bar's own
(:func:`models.core.bar.parse_date`).

Examples
--------
>>> parse_day("20070104"), parse_day("2/8/2013"), parse_day("2013-02-08 00:00:00")
(datetime.date(2007, 1, 4), datetime.date(2013, 2, 8), datetime.date(2013, 2, 8))
>>> parse_day("2/8/2013", day_first=True), parse_day("08.02.2013")
(datetime.date(2013, 8, 2), datetime.date(2013, 2, 8))
>>> parse_day("13/45/2013")
Traceback (most recent call last):
...
models.core.bar.BarError: bad_date: date '13/45/2013' is not M/D/YYYY
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from models.core.bar import BarError, parse_date


def _slash_parts(text: str, separator: str = "/") -> list[str] | None:
    """The three fields of ``A/B/YYYY`` (a time after it ignored); None when ``text`` is not one."""
    parts = text.split()[0].split(separator) if text.strip() else []
    if len(parts) != 3 or len(parts[2]) != 4 or not all(p.isdigit() for p in parts):
        return None
    return parts


def _slash_date(text: str, day_first: bool, separator: str = "/") -> dt.date:
    spelling = f"D{separator}M{separator}YYYY" if day_first else f"M{separator}D{separator}YYYY"
    parts = _slash_parts(text, separator)
    if parts is None:
        raise BarError("bad_date", f"date {text!r} is not {spelling}")
    month, day = (parts[1], parts[0]) if day_first else (parts[0], parts[1])
    try:
        return dt.date(int(parts[2]), int(month), int(day))
    except ValueError:
        raise BarError("bad_date", f"date {text!r} is not {spelling}") from None


def is_day_first(dates: Iterable[str]) -> bool:
    """Whether a file's slash dates are ``D/M/YYYY``: some have a first field above 12, none a second.

    Anything else (no slash dates, only ambiguous ones, or both kinds) reads as ``M/D/YYYY``; in the
    last case the rows that do not fit it are rejected as ``bad_date``, not guessed.

    >>> is_day_first(["13/02/2013", "14/02/2013"]), is_day_first(["02/13/2013"]), is_day_first(["2/3/2013"])
    (True, False, False)
    >>> is_day_first(["13/02/2013", "02/13/2013"])  # both: neither order reads every row
    False
    """
    first_over_12 = second_over_12 = False
    for text in dates:
        parts = _slash_parts(text)
        if parts is None:
            continue
        first_over_12 |= int(parts[0]) > 12
        second_over_12 |= int(parts[1]) > 12
    return first_over_12 and not second_over_12


def _compact_date(text: str) -> dt.date:
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise BarError("bad_date", f"date {text!r} is not YYYYMMDD") from None


def parse_day(text: str, *, day_first: bool = False) -> dt.date:
    """The date in ``text``: ISO, ``M/D/YYYY`` (``D/M/YYYY`` with ``day_first``), ``D.M.YYYY`` or
    ``YYYYMMDD``; :class:`BarError` when it is none of them."""
    value = text.strip()
    if len(value) == 8 and value.isdigit():
        return parse_date(_compact_date(value))
    if "/" in value:
        return parse_date(_slash_date(value, day_first))
    head = value.partition(" ")[0]
    if head.count(".") == 2 and head.replace(".", "").isdigit():
        return parse_date(_slash_date(value, True, "."))
    return parse_date(value)
