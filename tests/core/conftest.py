"""Real bars for the core's tests, read once per session with the producers' reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.core.bar import Bar
from producers.readers import read_csv_bars
from tests.core.helpers import SP500_SAMPLE


@pytest.fixture(scope="session")
def sp500_bars(data_dir: Path) -> list[Bar]:
    """Valid bars of :data:`SP500_SAMPLE` plus AAPL, sorted by (date, ticker) as a feed sends them."""
    return read_csv_bars([data_dir / "sp500-5yr-sample.csv.gz"], tickers={*SP500_SAMPLE, "AAPL"}).bars


@pytest.fixture(scope="session")
def by_ticker(sp500_bars: list[Bar]) -> dict[str, list[Bar]]:
    """The same bars per ticker, oldest first."""
    series: dict[str, list[Bar]] = {}
    for bar in sp500_bars:
        series.setdefault(bar.ticker, []).append(bar)
    return series
