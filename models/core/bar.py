"""The daily bar: the one record every part of the system agrees on.

A :class:`Bar` is validated when it is made, by the same rules in the replay producer (on CSV rows)
and in the stream worker (on messages of the ``bars`` topic), so a row that one side rejects the
other rejects too, with the same reason. Rejections raise :class:`BarError`, whose ``reason`` is one
of :data:`REASONS`: a short, stable code used as the dead letter's reason and as a metric label.

Examples
--------
>>> bar = Bar.from_dict({"ticker": "MSFT", "date": "2013-02-08", "open": 27.35, "high": 27.71,
...                      "low": 27.31, "close": 27.55, "volume": 33318306})
>>> bar.date.isoformat(), bar.close
('2013-02-08', 27.55)
>>> Bar.from_dict({"ticker": "MSFT", "date": "2013-02-08", "open": 27.35, "high": 27.0,
...                "low": 27.31, "close": 27.55, "volume": 1})
Traceback (most recent call last):
...
models.core.bar.BarError: high_below_open_close: high 27.0 < max(open, close) 27.55
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: Every reason a row or message can be rejected for, with what it means.
REASONS: dict[str, str] = {
    "not_json": "the message is not a JSON object",
    "missing_field": "a required field is absent or empty",
    "bad_ticker": "the ticker is not a non-empty string of at most 32 printable characters",
    "bad_date": "the date is not a valid calendar date in 1900..2100",
    "not_numeric": "a price or volume is not a number",
    "not_finite": "a price or volume is NaN or infinite",
    "non_positive_price": "a price is zero or negative",
    "high_below_open_close": "high is below max(open, close)",
    "low_above_open_close": "low is above min(open, close)",
    "negative_volume": "volume is negative",
    "duplicate": "a bar of the same ticker and date was already accepted",
    "out_of_order": "the bar is dated on or before the last bar applied for its ticker",
    "step_failed": "the forecasting step raised on this bar (a bug of the core that its numbers met; "
                   "detail: the error); not applied, its ticker goes on from its last applied bar",
    "unreadable_file": "the file could not be read or its layout was not recognised",
    "corrupt_state": "the worker's stored state of a ticker could not be decoded (raw: its bytes, "
                     "base64); the ticker started afresh",
    "corrupt_position": "the worker's stored position of a bars partition could not be decoded (raw: "
                        "its bytes, base64); the partition was read again from its first offset",
}

PRICE_FIELDS = ("open", "high", "low", "close")
REQUIRED_FIELDS = ("ticker", "date", *PRICE_FIELDS, "volume")
MIN_DATE = dt.date(1900, 1, 1)
MAX_DATE = dt.date(2100, 12, 31)
_PLAIN_NUMBERS = frozenset({float, int})  # a JSON number's types (not bool's)


class BarError(ValueError):
    """A row or message that cannot be a bar; ``reason`` is a key of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _number(name: str, value: Any) -> float:
    if type(value) is float or type(value) is int:  # a JSON number (bool is not): the common case
        try:
            number = float(value)
        except OverflowError:  # an int past the float range (a caller's; JSON decoders give inf)
            raise BarError("not_finite", f"{name} is an integer of {int(value).bit_length()} bits, past the "
                           "float range") from None
        if number - number == 0.0:  # finite: inf - inf and NaN - NaN are NaN
            return number
        raise BarError("not_finite", f"{name} is {value!r}")
    if value is None or value == "":
        raise BarError("missing_field", f"{name} is empty")
    if isinstance(value, bool):
        raise BarError("not_numeric", f"{name}={value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BarError("not_numeric", f"{name}={value!r} is not a number") from None
    except OverflowError:  # a number type past the float range (a Fraction, an int subclass)
        raise BarError("not_finite", f"{name} is a {type(value).__name__} past the float range") from None
    if not math.isfinite(number):
        raise BarError("not_finite", f"{name} is {value!r}")
    return number


#: The dates of the texts :func:`parse_date` accepted, by text; emptied when it holds
#: :data:`_DATES_CACHED` (a replay's messages share few dates, but texts with time parts are many).
_DATES: dict[str, dt.date] = {}
_DATES_CACHED = 10_000


def parse_date(value: Any) -> dt.date:
    """An ISO date (``YYYY-MM-DD``, optionally with a time part) as a :class:`datetime.date`."""
    if type(value) is not str:
        return _parse_date(value)
    day = _DATES.get(value)
    if day is None:
        day = _parse_date(value)  # a text refused is not remembered: it raises again, the same way
        if len(_DATES) >= _DATES_CACHED:
            _DATES.clear()
        _DATES[value] = day
    return day


def _parse_date(value: Any) -> dt.date:
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            # A time part must be a valid one after "T" or a space: "2013-02-081" is a typo, not 2013-02-08.
            if len(text) > 10 and text[10] not in "T ":
                raise ValueError(text)
            day = dt.datetime.fromisoformat(text).date() if len(text) > 10 else dt.date.fromisoformat(text)
        except ValueError:
            raise BarError("bad_date", f"date {value!r} is not YYYY-MM-DD") from None
    elif isinstance(value, dt.datetime):
        day = value.date()
    elif isinstance(value, dt.date):
        day = value
    elif value is None or value == "":
        raise BarError("missing_field", "date is empty")
    else:
        raise BarError("bad_date", f"date {value!r} is not a string")
    if not MIN_DATE <= day <= MAX_DATE:
        raise BarError("bad_date", f"date {day.isoformat()} is outside {MIN_DATE}..{MAX_DATE}")
    return day


@dataclass(frozen=True, slots=True)
class Bar:
    """One validated daily bar of one ticker.

    Parameters
    ----------
    ticker
        Symbol, the Kafka key of every record about it.
    date
        Trading day.
    open, high, low, close
        Prices, positive, with ``low <= min(open, close)`` and ``high >= max(open, close)``.
    volume
        Shares traded, non-negative (zero-volume days exist in real data).
    adj_close
        Split- and dividend-adjusted close, when the source has one.
    source
        Where the bar came from, ``file:line``.
    """

    ticker: str
    date: dt.date
    open: float
    high: float
    low: float
    close: float
    volume: float
    adj_close: float | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        ticker, open_, high, low, close, volume = (self.ticker, self.open, self.high, self.low, self.close,
                                                   self.volume)
        # Printable: a ticker is echoed in logs, metric labels and terminals (no escapes, no line breaks).
        if not isinstance(ticker, str) or not ticker.strip() or len(ticker) > 32 or not ticker.isprintable():
            raise BarError("bad_ticker", f"ticker {ticker!r}")
        if open_ <= 0 or high <= 0 or low <= 0 or close <= 0:
            name = next(name for name in PRICE_FIELDS if getattr(self, name) <= 0)
            raise BarError("non_positive_price", f"{name} {getattr(self, name)!r} <= 0")
        # max(open, close) and min(open, close) as the builtins pick them (NaN too), without their calls.
        top = close if close > open_ else open_
        bottom = close if close < open_ else open_
        if high < top:
            raise BarError("high_below_open_close", f"high {high!r} < max(open, close) {top!r}")
        if low > bottom:
            raise BarError("low_above_open_close", f"low {low!r} > min(open, close) {bottom!r}")
        if volume < 0:
            raise BarError("negative_volume", f"volume {volume!r} < 0")
        if self.adj_close is not None and self.adj_close <= 0:
            raise BarError("non_positive_price", f"adj_close {self.adj_close!r} <= 0")

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Bar:
        """Validate a decoded record (a CSV row mapped to field names, or a JSON message)."""
        if type(record) is dict:
            # The worker's every message: the plain values of a JSON object, most often a valid bar's.
            # Any record the short way does not take, or whose bar is refused, goes the long way,
            # which gives the reason (a refused record's work is done twice; a valid one's once).
            try:
                bar = cls._from_plain(record)
            except (BarError, OverflowError):
                bar = None
            if bar is not None:
                return bar
        if not isinstance(record, Mapping):
            raise BarError("not_json", f"expected an object, got {type(record).__name__}")
        for name in REQUIRED_FIELDS:
            value = record.get(name)
            if value is None or value == "":
                raise BarError("missing_field", f"{name} is missing")
        ticker = record["ticker"]
        if not isinstance(ticker, str):
            raise BarError("bad_ticker", f"ticker {ticker!r} is not a string")
        adj = record.get("adj_close")
        source = record.get("source")
        return cls(ticker.strip(), parse_date(record["date"]), _number("open", record["open"]),
                   _number("high", record["high"]), _number("low", record["low"]),
                   _number("close", record["close"]), _number("volume", record["volume"]),
                   None if adj is None or adj == "" else _number("adj_close", adj),
                   None if source is None else str(source))

    @classmethod
    def _from_plain(cls, record: dict[str, Any]) -> Bar | None:
        """The bar :meth:`from_dict` makes of ``record`` when its values are plain (a string ticker;
        int or float prices and volume, and adj_close if not None; a string source if not None), else
        None. Raises :class:`BarError` (with no reliable reason) or OverflowError if the bar is
        refused."""
        get = record.get
        ticker, date, adj, source = get("ticker"), get("date"), get("adj_close"), get("source")
        numbers: tuple[Any, ...] = get("open"), get("high"), get("low"), get("close"), get("volume")
        if (type(ticker) is not str or not _PLAIN_NUMBERS.issuperset(map(type, numbers))
                or (adj is not None and type(adj) not in _PLAIN_NUMBERS)
                or (source is not None and type(source) is not str)):
            return None
        open_, high, low, close, volume = map(float, numbers)
        adj_close = None if adj is None else float(adj)
        # Not finite if one of them is NaN or infinite (or if the sum overflows: the long way takes those).
        if not math.isfinite(open_ + high + low + close + volume + (adj_close or 0.0)):
            return None
        return cls(ticker.strip(), parse_date(date), open_, high, low, close, volume, adj_close, source)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``schemas/bar.schema.json``."""
        record = asdict(self)
        record["date"] = self.date.isoformat()
        return record
