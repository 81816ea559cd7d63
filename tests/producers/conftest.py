"""A small slice of the real S&P 500 file, shared by the reader and broker tests."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

#: Two tickers with known bad rows (LNT 2016-05-19, BHF's empty cells) and two clean ones.
SLICE_TICKERS = {"LNT", "BHF", "AAL", "AOS"}


@pytest.fixture
def sp500_slice(data_dir: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """Every row of :data:`SLICE_TICKERS` from the real file, gzipped; and the lines written."""
    with gzip.open(data_dir / "sp500-5yr-sample.csv.gz", "rt") as f:
        lines = [next(f)] + [line for line in f if line.rstrip().rsplit(",", 1)[-1] in SLICE_TICKERS]
    path = tmp_path / "slice.csv.gz"
    path.write_bytes(gzip.compress("".join(lines).encode()))
    return path, lines
