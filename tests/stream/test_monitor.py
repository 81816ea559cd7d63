"""The worker's metrics from real core results: conditional coverage by volatility regime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forecaster.settings import load
from models.core.config import CoreConfig
from models.core.step import step_many
from producers.readers import read_csv_bars
from stream_app.metrics import WorkerMetrics
from stream_app.monitor import POOLED_WINDOW_FACTOR, ForecastMonitor

TICKERS = ("AAPL", "GE", "JPM", "XOM")


def test_coverage_by_regime_is_the_rolling_share_inside_per_regime(data_dir: Path) -> None:
    settings = load({"FORECASTER_ROLLING_WINDOW": "20", "FORECASTER_MODEL": "naive"})
    config = CoreConfig.from_settings(settings, window=60, calibration_window=40)
    metrics = WorkerMetrics()
    monitor = ForecastMonitor(settings, metrics)
    path = data_dir / "sp500-5yr-sample.csv.gz"
    bars = read_csv_bars([path], tickers=set(TICKERS)).bars[: 300 * len(TICKERS)]
    days: dict = {}
    for bar in bars:
        days.setdefault(bar.date, []).append(bar)
    states: dict = {}
    scores = []
    for batch in days.values():
        results = step_many([states.get(b.ticker) for b in batch], batch, config)
        for bar, result in zip(batch, results, strict=True):
            states[bar.ticker] = result.state
            scores += [result.score] if result.score else []
        monitor.observe_batch(list(zip(batch, results, strict=True)), 0.001)

    window = settings.rolling_window * POOLED_WINDOW_FACTOR
    seen = set()
    for regime in ("calm", "middle", "volatile"):
        mine = [s for s in scores if s["vol_regime"] == regime][-window:]
        assert mine, regime  # 300 days of four tickers meet every regime
        for level in ("80", "95"):
            exported = metrics.registry.get_sample_value(
                "forecaster_interval_coverage_by_regime", {"level": str(int(level) / 100), "regime": regime})
            assert exported == np.mean([s[f"inside_{level}"] for s in mine])
            seen.add(exported)
    assert len(seen) > 1  # the regimes' coverages are their own, not one pooled figure
    assert metrics.registry.get_sample_value("forecaster_interval_coverage_by_regime",
                                             {"level": "0.8", "regime": "None"}) is None
