"""A feed for a worker scraped by a real Prometheus (test_observability, test_alerts): real daily
returns (AAPL, IBM, MSFT in 2011-2012) resampled day by day with their ranges and volumes, so each
series is stationary by construction, optionally with a volatility jump two thirds of the way in;
a worker with a Prometheus that scrapes it; and the feed's replay, done when Prometheus has seen
every bar consumed."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from forecaster.settings import Settings
from models.core.bar import Bar
from producers.readers import read_csv_bars
from producers.replay import replay
from tests.deploy.prometheus_server import PrometheusServer, running_prometheus
from tests.worker import WorkerProcess, as_read, wait_until

TICKERS = ("AAPL", "IBM", "MSFT")
DAYS = 600
SHIFT_AT = 400
VOLATILITY_JUMP = 4.0


def resampled_bars(data_dir: Path, shift: bool, seed: int = 11) -> list[Bar]:
    """Bars whose days are real (return, range, volume) triples drawn with replacement."""
    real = read_csv_bars([data_dir / "bokeh-stocks.csv.gz"], tickers=TICKERS, start=dt.date(2011, 1, 1),
                         end=dt.date(2012, 12, 31)).bars
    rng = np.random.default_rng(seed)
    bars = []
    for ticker in TICKERS:
        history = [b for b in real if b.ticker == ticker]
        days = [(math.log(b.close / a.close), b.high / b.close, b.low / b.close, b.open / b.close, b.volume)
                for a, b in itertools.pairwise(history)]
        close, day = history[0].close, dt.date(2020, 1, 6)
        for i in range(DAYS):
            log_return, high, low, open_, volume = days[rng.integers(len(days))]
            scale = VOLATILITY_JUMP if shift and i >= SHIFT_AT else 1.0
            close *= math.exp(scale * log_return)
            # The range widens with the volatility: ratios to the close are scaled in log space.
            bars.append(Bar(ticker, day, close * open_ ** scale, close * high ** scale, close * low ** scale,
                            close, volume, source="resampled"))
            day += dt.timedelta(days=3 if day.weekday() == 4 else 1)
    return sorted(bars, key=lambda b: (b.date, b.ticker))


def replay_and_wait(bars: list[Bar], settings: Settings, worker: WorkerProcess,
                    prometheus: PrometheusServer) -> None:
    replay(as_read(bars), settings, progress=False)
    wait_until(lambda: prometheus.values("forecaster_bars_consumed_total") == [float(len(bars))],
               f"Prometheus did not see {len(bars)} bars consumed", worker)


@contextmanager
def scraped_worker(settings: Settings, workdir: Path,
                   rule_files: Sequence[Path]) -> Iterator[tuple[WorkerProcess, PrometheusServer]]:
    """A worker, and a Prometheus in ``workdir`` that scrapes it every second and evaluates ``rule_files``."""
    with WorkerProcess(settings, workdir / "worker.log") as worker:
        worker.metrics()  # up before Prometheus starts scraping it
        target = f"{worker.settings.metrics_host}:{worker.settings.metrics_port}"
        with running_prometheus(workdir / "prometheus", [target], rule_files) as prometheus:
            yield worker, prometheus
