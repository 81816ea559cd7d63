"""`forecaster demo --quick` end to end on a small slice: its own broker, a champion attempt,
a worker, the replay, the table and the report; then a second run reusing what the first prepared."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from forecaster.kafka.broker import LocalBroker, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def small_slice(data_dir: Path, tmp_path: Path) -> Path:
    """Two tickers over three years of the bokeh sample (about 1,500 bars), in its own layout."""
    frame = pd.read_csv(data_dir / "bokeh-stocks.csv.gz")
    frame = frame[frame["Ticker"].isin(["AAPL", "MSFT"]) & (frame["Date"] >= "2010-01-01")
                  & (frame["Date"] < "2013-01-01")]
    path = tmp_path / "slice.csv"
    frame.to_csv(path, index=False)
    return path


def run_demo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FORECASTER_BOOTSTRAP"}
    env.update(FORECASTER_HOME=str(home), FORECASTER_METRICS_PORT=str(free_port()), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "forecaster.cli", "demo", "--quick", *args], env=env,
                          capture_output=True, text=True, timeout=900, check=False)


def test_demo_runs_end_to_end_and_a_second_run_reuses_the_first(small_slice: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = str(free_port())
    first = run_demo(home, "--data", str(small_slice), "--port", port)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "training   arima" in out
    assert "predicted  " in out and "100%" in out
    table = out[out.index("Out-of-sample days"):]
    assert "\nAAPL " in table and "\nMSFT " in table
    assert re.search(r"\nrelative MAE over 2 tickers \(geometric mean\) \d\.\d{4}; "
                     r"MAE below naive on \d of 2", table)
    report = home / "demo-report.png"
    assert report.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "broker     stopped" in out and "worker     stopped" in out
    assert not LocalBroker(home / "kafka").running()

    second = run_demo(home, "--data", str(small_slice), "--port", port)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "training" not in second.stdout  # the store of the first run is reused
    assert "an earlier run" in second.stdout
    # Same data, same namespace reset: the same figures.
    assert second.stdout[second.stdout.index("Out-of-sample days"):].split("\nreport")[0] == \
        table.split("\nreport")[0]


def test_demo_fails_fast_when_the_broker_port_is_taken(small_slice: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_demo(tmp_path / "home", "--data", str(small_slice), "--port", port)
    assert result.returncode == 2
    assert "is in use" in result.stderr and "--port" in result.stderr


def test_demo_streams_a_file_too_short_to_train_on_with_the_cores_model(data_dir: Path,
                                                                         tmp_path: Path) -> None:
    # 300 days of one stock (the case): no candidate can be trained and validated on its
    # first 70 %, so the demo says so in one line and streams it with the core's ARIMA.
    frame = pd.read_csv(data_dir / "bokeh-stocks.csv.gz")
    path = tmp_path / "my.csv"
    frame[frame["Ticker"] == "AAPL"].sort_values("Date").tail(300).to_csv(path, index=False)
    home = tmp_path / "home"
    result = run_demo(home, "--data", str(path), "--port", str(free_port()))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    (line,) = [line for line in out.splitlines() if line.startswith("champion   ")]
    assert line.startswith("champion   none: too little history to train a candidate (")
    assert line.endswith("the worker serves the core's arima")
    assert "predicted  300/300 (100%" in out
    table = out[out.index("Out-of-sample days"):]
    assert "(model arima version 2,1,0)" in table  # the core's ARIMA order, no registry version
    (row,) = [row for row in table.splitlines() if row.startswith("AAPL ")]
    assert int(row.split()[1]) > 0  # days scored after the ARIMA's warm-up
    assert (home / "demo-report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "broker     stopped" in out and "worker     stopped" in out
