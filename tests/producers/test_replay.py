"""What replay refuses before it connects to anything."""

from __future__ import annotations

import pytest

from forecaster.settings import Settings
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
