"""Date spellings of real exports, and the ones that must be rejected as bad_date."""

from __future__ import annotations

import datetime as dt

import pytest

from models.core.bar import BarError
from producers.dates import parse_day


@pytest.mark.parametrize("text, day", [
    ("2013-02-08", dt.date(2013, 2, 8)),
    ("2013-02-08 00:00:00", dt.date(2013, 2, 8)),
    ("2/8/2013", dt.date(2013, 2, 8)),
    ("12/31/2021 16:00", dt.date(2021, 12, 31)),
    ("20070104", dt.date(2007, 1, 4)),
    (" 2013-02-08 ", dt.date(2013, 2, 8)),
])
def test_recognised_spellings(text: str, day: dt.date) -> None:
    assert parse_day(text) == day


@pytest.mark.parametrize("text", ["2013-02-30", "13/1/2013", "1/2/13", "20071304", "yesterday", "1850-01-01",
                                  "2013/02/08"])
def test_unparsable_or_out_of_range_dates_are_bad_date(text: str) -> None:
    with pytest.raises(BarError) as caught:
        parse_day(text)
    assert caught.value.reason == "bad_date"


def test_empty_date_is_a_missing_field() -> None:
    with pytest.raises(BarError) as caught:
        parse_day("  ")
    assert caught.value.reason == "missing_field"
