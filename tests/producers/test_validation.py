"""The reader's verdict on a row is the bar's: same acceptance, same reason; and no row is lost."""

from __future__ import annotations

import datetime as dt
import tempfile
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.core.bar import Bar, BarError
from producers.readers import read_csv_bars
from producers.validation import RowChecker

NUMBERS = st.sampled_from(["", "0", "-1", "1", "1.5", "2", "3", "1e3", "nan", "inf", "-inf", "abc", " 2 ",
                           "1e400", "True"])
DATES = st.sampled_from(["2013-02-08", "2013-02-11", "2013-02-30", "", "x", "1850-01-01", "2013-02-08 09:30"])
TICKERS = st.sampled_from(["AAL", " MSFT ", "", " ", "X" * 33])


def _verdict(make: object) -> str:
    try:
        make()  # type: ignore[operator]
    except BarError as error:
        return error.reason
    return "ok"


@settings(max_examples=400, deadline=None)
@given(TICKERS, DATES, NUMBERS, NUMBERS, NUMBERS, NUMBERS, NUMBERS, st.sampled_from(["", "1", "-1", "nan"]))
def test_row_checker_agrees_with_bar_from_dict(ticker: str, date: str, open_: str, high: str, low: str,
                                               close: str, volume: str, adj: str) -> None:
    record = {"ticker": ticker, "date": date, "open": open_, "high": high, "low": low, "close": close,
              "volume": volume, "adj_close": adj, "source": "f.csv:2"}
    expected = _verdict(lambda: Bar.from_dict(record))
    got = _verdict(lambda: RowChecker().check(ticker, date, open_, high, low, close, volume, adj, "f.csv:2"))
    assert got == expected


ROWS = st.lists(st.tuples(st.sampled_from(["AAL", "MSFT", ""]), DATES, NUMBERS, NUMBERS, NUMBERS, NUMBERS,
                          st.sampled_from(["1", "-1", ""])), max_size=30)


@settings(max_examples=60, deadline=None)
@given(ROWS, st.sampled_from([None, ["AAL"]]), st.sampled_from([None, dt.date(2013, 2, 9)]))
def test_every_row_ends_in_exactly_one_place(rows: list[tuple[str, ...]], tickers: list[str] | None,
                                             start: dt.date | None) -> None:
    text = "Ticker,Date,Open,High,Low,Close,Volume\n" + "".join(",".join(row) + "\n" for row in rows)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.csv"
        path.write_text(text)
        result = read_csv_bars([path], tickers=tickers, start=start)
    assert result.rows_read == len(rows)
    assert result.rows_read == len(result.bars) + len(result.dead_letters) + result.filtered
    lines = [int(b.source.split(":")[1]) for b in result.bars]
    lines += [int(d.source.split(":")[1]) for d in result.dead_letters]
    assert len(lines) == len(set(lines)) and set(lines) <= set(range(2, len(rows) + 2))


@pytest.mark.parametrize("field", ["open", "high", "low", "close", "volume", "adj_close"])
def test_an_integer_past_the_float_range_is_not_finite_in_one_line(field: str) -> None:
    # JSON decoders give such a number as inf; a caller passing a Python int gets the same reason.
    record = {"ticker": "AAA", "date": "2020-03-02", "open": 10, "high": 10, "low": 10, "close": 10,
              "volume": 10, field: 10**400}
    with pytest.raises(BarError) as raised:
        Bar.from_dict(record)
    assert raised.value.reason == "not_finite"
    assert str(raised.value) == f"not_finite: {field} is an integer of 1329 bits, past the float range"


def test_a_number_type_past_the_float_range_is_not_finite() -> None:
    record = {"ticker": "AAA", "date": "2020-03-02", "open": 10, "high": 10, "low": 10, "close": 10,
              "volume": Fraction(10**400)}
    with pytest.raises(BarError, match=r"^not_finite: volume is a Fraction past the float range$"):
        Bar.from_dict(record)
