"""Real bars for the core's tests, read once per session with the producers' reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.core.bar import Bar
from producers.readers import read_csv_bars

# Every 8th ticker (alphabetically) of the 470 S&P 500 tickers that have all 1,259 days of
# the S&P 500 file (sp500-5yr-sample.csv.gz carries them): a spread of sectors, chosen by rule rather
# than by result.
SP500_SAMPLE = (
    "A", "ADBE", "AES", "AKAM", "AME", "ANTM", "ARNC", "AZO", "BF.B", "BXP", "CBOE", "CHD", "CMA", "COF",
    "CSCO", "CXO", "DIS", "DRE", "ECL", "EQIX", "EW", "FBHS", "FL", "GE", "GPN", "HBAN", "HII", "HSIC",
    "INCY", "IT", "JPM", "KMX", "LEG", "LNT", "MAA", "MCO", "MMC", "MRO", "NBL", "NKE", "NUE", "PBCT",
    "PFG", "PM", "PSA", "RE", "RMD", "SBUX", "SLG", "SRE", "SYMC", "TJX", "TSN", "UHS", "UTX", "VRSK",
    "WEC", "WYN", "XRX",
)


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
