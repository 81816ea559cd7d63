"""What replay refuses before it connects to anything."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from forecaster.settings import Settings
from models.core.bar import Bar
from producers.readers import ReadResult
from producers.replay import ReplaySummary, replay


def test_bars_and_dead_letters_must_go_to_different_topics() -> None:
    with pytest.raises(ValueError, match=r"'bars\.dlq'; they must differ"):
        replay(ReadResult(), Settings(), topic="bars.dlq")


def test_a_read_that_lost_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="does not account for 2 of its 2 rows"):
        replay(ReadResult(rows_read=2), Settings())


def test_summary_accounting() -> None:
    assert ReplaySummary(10, 1, 7, {"duplicate": 2}).accounted
    assert not ReplaySummary(10, 1, 6, {"duplicate": 2}).accounted
    assert ReplaySummary(10, 0, 8, seconds=2.0).bars_per_s == 4.0


def test_the_published_json_is_bar_to_dict() -> None:
    # replay serialises the Bar dataclass with orjson directly (no dict in between); it must write
    # exactly what Bar.to_dict gives and Bar.from_dict reads back.
    for bar in (Bar("AAL", dt.date(2013, 2, 8), 15.07, 15.12, 14.63, 14.75, 8407500.0),
                Bar("MSFT", dt.date(2013, 2, 8), 27.35, 27.71, 27.31, 27.55, 1.0, 25.2, "f.csv:2")):
        value = orjson.loads(orjson.dumps(bar))
        assert value == bar.to_dict()
        assert Bar.from_dict(value) == bar
