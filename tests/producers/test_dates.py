"""Date spellings of real exports, and the ones that must be rejected as bad_date."""

from __future__ import annotations

import datetime as dt

import pytest

from models.core import bar
from models.core.bar import BarError, parse_date
from producers.dates import is_day_first, parse_day


@pytest.mark.parametrize("text, day", [
    ("2013-02-08", dt.date(2013, 2, 8)),
    ("2013-02-08 00:00:00", dt.date(2013, 2, 8)),
    ("2/8/2013", dt.date(2013, 2, 8)),
    ("12/31/2021 16:00", dt.date(2021, 12, 31)),
    ("20070104", dt.date(2007, 1, 4)),
    ("08.02.2013", dt.date(2013, 2, 8)),
    ("8.2.2013 00:00", dt.date(2013, 2, 8)),
    (" 2013-02-08 ", dt.date(2013, 2, 8)),
])
def test_recognised_spellings(text: str, day: dt.date) -> None:
    assert parse_day(text) == day


@pytest.mark.parametrize("text", ["2013-02-30", "13/1/2013", "1/2/13", "20071304", "yesterday", "1850-01-01",
                                  "2013/02/08", "2013.02.08", "31.02.2013", "1.5e3"])
def test_unparsable_or_out_of_range_dates_are_bad_date(text: str) -> None:
    with pytest.raises(BarError) as caught:
        parse_day(text)
    assert caught.value.reason == "bad_date"


def test_empty_date_is_a_missing_field() -> None:
    with pytest.raises(BarError) as caught:
        parse_day("  ")
    assert caught.value.reason == "missing_field"


def test_parse_date_remembers_a_bounded_number_of_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bar, "_DATES", {})
    monkeypatch.setattr(bar, "_DATES_CACHED", 3)
    days = [dt.date(2020, 1, d) for d in range(1, 8)]
    assert [parse_date(f" {d.isoformat()}") for d in days * 2] == days * 2
    assert len(bar._DATES) <= 3
    for _ in range(2):  # a text refused is refused again, the same way
        with pytest.raises(BarError, match=r"^bad_date: date '2013-02-30' is not YYYY-MM-DD$"):
            parse_date("2013-02-30")


def test_day_first_reads_the_day_before_the_month() -> None:
    assert parse_day("13/02/2013", day_first=True) == dt.date(2013, 2, 13)
    assert parse_day("01/03/2013 09:30", day_first=True) == dt.date(2013, 3, 1)
    with pytest.raises(BarError, match="is not D/M/YYYY"):
        parse_day("02/13/2013", day_first=True)


@pytest.mark.parametrize("dates, expected", [
    (["01/02/2013", "13/02/2013"], True),  # a day above 12 in front
    (["02/01/2013", "02/13/2013"], False),  # a day above 12 behind
    (["01/02/2013", "02/03/2013"], False),  # nothing tells: the US order
    (["13/02/2013", "02/13/2013"], False),  # both: neither order fits every row
    (["2013-02-13", "", "junk", "13/02/2013"], True),  # other spellings and junk say nothing
    ([], False),
])
def test_a_files_order_comes_from_its_dates(dates: list[str], expected: bool) -> None:
    assert is_day_first(dates) is expected
