"""Trading dates as the files people have spell them.

Three spellings are recognised, value by value, since each is unambiguous on its own:

- ISO ``YYYY-MM-DD``, optionally followed by a time (most exports, Kaggle, pandas' ``to_csv``);
- US ``M/D/YYYY``, optionally followed by a time (Yahoo Finance and spreadsheets saved in the US);
- ``YYYYMMDD`` as eight digits (TuShare's ``trade_date``).

Day-first ``D/M/YYYY`` cannot be told from ``M/D/YYYY`` by looking at one value; such files need the
dates rewritten to ISO first. The range check is the bar's own (:func:`models.core.bar.parse_date`).

Examples
--------
>>> parse_day("20070104"), parse_day("2/8/2013"), parse_day("2013-02-08 00:00:00")
(datetime.date(2007, 1, 4), datetime.date(2013, 2, 8), datetime.date(2013, 2, 8))
>>> parse_day("13/45/2013")
Traceback (most recent call last):
...
models.core.bar.BarError: bad_date: date '13/45/2013' is not M/D/YYYY
"""

from __future__ import annotations

import datetime as dt

from models.core.bar import BarError, parse_date


def _us_date(text: str) -> dt.date:
    parts = text.split()[0].split("/")
    if len(parts) != 3 or len(parts[2]) != 4 or not all(p.isdigit() for p in parts):
        raise BarError("bad_date", f"date {text!r} is not M/D/YYYY")
    try:
        return dt.date(int(parts[2]), int(parts[0]), int(parts[1]))
    except ValueError:
        raise BarError("bad_date", f"date {text!r} is not M/D/YYYY") from None


def _compact_date(text: str) -> dt.date:
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise BarError("bad_date", f"date {text!r} is not YYYYMMDD") from None


def parse_day(text: str) -> dt.date:
    """The date in ``text`` (ISO, ``M/D/YYYY`` or ``YYYYMMDD``); :class:`BarError` when it is not one."""
    value = text.strip()
    if len(value) == 8 and value.isdigit():
        return parse_date(_compact_date(value))
    if "/" in value:
        return parse_date(_us_date(value))
    return parse_date(value)
