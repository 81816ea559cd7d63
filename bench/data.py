"""Where the benchmarks find the full S&P 500 file, which is too large to ship with the package.

``FORECASTER_BENCH_DATA`` names a folder holding ``sp500-5yr.csv.gz`` (505 tickers, 619,040 rows; its
provenance is in ``forecaster/data/README.md``, whose ``sp500-5yr-sample.csv.gz`` is a 73-ticker cut of
it); the default is ``../shared/data`` beside the checkout, where this project's development machines
keep it. Nothing but the benchmarks reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "FORECASTER_BENCH_DATA"
SP500 = "sp500-5yr.csv.gz"


def bench_data_dir() -> Path:
    """``$FORECASTER_BENCH_DATA``, else ``../shared/data`` beside the checkout."""
    configured = os.environ.get(ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "data"


def sp500_file() -> Path:
    """The full S&P 500 file; SystemExit with one line saying where it was looked for when missing."""
    path = bench_data_dir() / SP500
    if not path.exists():
        raise SystemExit(f"{path} is missing: this benchmark reads the full S&P 500 file ({SP500}, 505 "
                         f"tickers); set {ENV} to a folder holding it (the package ships only a 73-ticker "
                         "cut, forecaster/data/sp500-5yr-sample.csv.gz)")
    return path
