"""Fixtures of the API tests: settings without a broker or a registry, and real data files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from forecaster.kafka.broker import free_port
from forecaster.settings import Settings, load


@pytest.fixture(scope="module")
def offline_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings whose broker address answers nothing (a free port) and whose registry is empty;
    one request may forecast 10,000 bars (fewer than the 12,154 of ``bokeh-stocks.csv.gz``)."""
    home = tmp_path_factory.mktemp("home")
    return load().replace(home=str(home), bootstrap=f"127.0.0.1:{free_port()}", api_max_bars=10_000)


@pytest.fixture(scope="session")
def two_sp500_tickers(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DHR and LNT of the S&P 500 file as they are: two rows with empty cells (DHR) and one whose low
    is above its close (LNT 2016-05-19)."""
    path = tmp_path_factory.mktemp("sp500") / "dhr-lnt.csv"
    with gzip.open(data_dir / "sp500-5yr-sample.csv.gz", "rt", newline="") as source:
        header = source.readline()
        rows = [line for line in source if line.rstrip("\r\n").endswith((",DHR", ",LNT"))]
    path.write_text(header + "".join(rows), newline="")
    return path
