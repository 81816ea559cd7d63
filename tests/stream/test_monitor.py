"""The worker's metrics from real core results: rolling figures per group, coverage by volatility regime,
and histograms fed a batch at once."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from forecaster.settings import load
from models.core.config import CoreConfig
from models.core.features import FEATURE_NAMES
from models.core.step import step_many
from models.drift import PageHinkleys
from producers.readers import read_csv_bars
from stream_app.metrics import LATENCY_BUCKETS, BatchHistogram, WorkerMetrics
from stream_app.monitor import POOLED_WINDOW_FACTOR, ForecastMonitor
from tests.models.helpers import plain_page_hinkley

TICKERS = ("AAPL", "GE", "JPM", "XOM")


def test_coverage_by_regime_is_the_rolling_share_inside_per_regime(data_dir: Path) -> None:
    settings = load({"FORECASTER_ROLLING_WINDOW": "20", "FORECASTER_MODEL": "naive"})
    config = CoreConfig.from_settings(settings, window=60)
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
            scores += result.scores
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


def test_rolling_figures_are_the_means_of_each_groups_last_window_of_scores(data_dir: Path) -> None:
    # Batches of 1 to 70 days: some fill less than a window, some wrap it, some are larger than it.
    settings = load({"FORECASTER_ROLLING_WINDOW": "20", "FORECASTER_MODEL": "naive",
                     "FORECASTER_METRICS_TICKER_LIMIT": "2"})
    config = CoreConfig.from_settings(settings, window=60)
    metrics = WorkerMetrics()
    monitor = ForecastMonitor(settings, metrics)
    bars = read_csv_bars([data_dir / "sp500-5yr-sample.csv.gz"], tickers=set(TICKERS)).bars
    days: dict = {}
    for bar in bars[: 400 * len(TICKERS)]:
        days.setdefault(bar.date, []).append(bar)
    ordered = list(days.values())
    states: dict = {}
    scores: list[tuple[str, dict]] = []
    start = 0
    for size in [1, 7, 70, 3, 20, 21, 1, 50] * 10:
        batch_days, start = ordered[start: start + size], start + size
        if not batch_days:
            break
        results = []
        for day in batch_days:
            stepped = step_many([states.get(b.ticker) for b in day], day, config)
            for bar, result in zip(day, stepped, strict=True):
                states[bar.ticker] = result.state
                results.append((bar, result))
                scores += [(bar.ticker, s) for s in result.scores]
        monitor.observe_batch(results, 0.001)

    labelled = sorted(monitor.labelled - {"other"})
    assert len(labelled) == 2
    groups = {ticker: [s for t, s in scores if t == ticker][-20:] for ticker in labelled}
    groups["other"] = [s for t, s in scores if t not in labelled][-20 * POOLED_WINDOW_FACTOR:]
    groups["all"] = [s for _, s in scores][-20 * POOLED_WINDOW_FACTOR:]
    for group, mine in groups.items():
        sample = {"ticker": group, "model": "naive"}
        assert metrics.registry.get_sample_value("forecaster_rolling_mae", sample) == pytest.approx(
            np.mean([abs(s["error"]) for s in mine]), rel=1e-12)
        assert metrics.registry.get_sample_value(
            "forecaster_interval_relative_width", {"ticker": group, "level": "0.8"}) == pytest.approx(
            np.mean([s["width_80"] / s["predicted_close"] for s in mine]), rel=1e-12)
    everyone = [s for _, s in scores]
    count = metrics.registry.get_sample_value("forecaster_abs_error_count", {"model": "naive"})
    assert count == len(everyone)
    assert metrics.registry.get_sample_value("forecaster_interval_hits_total", {"level": "0.95"}) == sum(
        s["inside_95"] for s in everyone)
    assert metrics.registry.get_sample_value("forecaster_naive_abs_error_total", {"model": "naive"}) == (
        pytest.approx(sum(abs(s["naive_error"]) for s in everyone), rel=1e-12))


@pytest.mark.parametrize("values", [
    [0.0005, 0.001, 0.0007, 3.0, 10.0, 11.0, -1.0],  # on a bound, between, past the last, negative
    [math.inf, 0.2],
    [math.nan, 0.2],
    [],
])
def test_a_batch_histogram_counts_a_batch_as_observe_counts_it_value_by_value(values: list[float]) -> None:
    registry = CollectorRegistry()
    one_by_one = BatchHistogram("one", "", buckets=LATENCY_BUCKETS, registry=registry)
    batched = BatchHistogram("batched", "", buckets=LATENCY_BUCKETS, registry=registry)
    for value in values:
        one_by_one.observe(value)
    batched.observe_many(values)

    def samples(name: str) -> list[tuple[str, dict, float]]:
        return [(s.name.removeprefix(name), s.labels, s.value) for family in registry.collect()
                if family.name == name for s in family.samples if not s.name.endswith("_created")]

    expected, got = samples("one"), samples("batched")
    assert [(n, labels) for n, labels, _ in got] == [(n, labels) for n, labels, _ in expected]
    for (_, _, want), (_, _, value) in zip(expected, got, strict=True):
        assert value == pytest.approx(want, rel=1e-12, nan_ok=True)


def test_input_drift_is_judged_only_on_a_full_window(data_dir: Path) -> None:
    # The reference learnt from the stream's own first rows: a window holding a few rows scores far
    # above the threshold (PSI.full), which once raised the drift alert on a stationary replay.
    settings = load({"FORECASTER_DRIFT_WINDOW": "50", "FORECASTER_MODEL": "naive"})
    config = CoreConfig.from_settings(settings, window=60)
    metrics = WorkerMetrics()
    monitor = ForecastMonitor(settings, metrics)
    monitor.set_model("naive", "0", None, FEATURE_NAMES)
    bars = read_csv_bars([data_dir / "sp500-5yr-sample.csv.gz"], tickers=set(TICKERS)).bars
    days: dict = {}
    for bar in bars[: 200 * len(TICKERS)]:
        days.setdefault(bar.date, []).append(bar)
    states: dict = {}
    part_filled_scores, judged = [], []
    for day in days.values():
        results = step_many([states.get(b.ticker) for b in day], day, config)
        for bar, result in zip(day, results, strict=True):
            states[bar.ticker] = result.state
        monitor.observe_batch(list(zip(day, results, strict=True)), 0.001)
        for feature, psi in monitor.psi.items():
            labels = {"feature": feature}
            score = metrics.registry.get_sample_value("forecaster_feature_drift_score", labels)
            state = metrics.registry.get_sample_value("forecaster_feature_drift_state", labels)
            if psi.full:
                judged.append((score, state))
            else:
                assert (score, state) == (None, None), feature
                part_filled_scores.append(psi.score())
    assert max(part_filled_scores) > settings.psi_threshold  # what the part-filled windows would have said
    assert judged and all(state == float(score > settings.psi_threshold) for score, state in judged)



def test_error_drift_and_latest_closes_after_a_batch_are_those_of_its_bars_one_by_one(data_dir: Path) -> None:
    # Batches of several days, so that a ticker has several scores in a batch, and a low threshold,
    # so that alarms come, some in the same batch (one of 70 days; an alarm restarts the detector,
    # which needs 30 values for the next); "other" pools two tickers' alarms.
    settings = load({"FORECASTER_ROLLING_WINDOW": "5", "FORECASTER_MODEL": "naive",
                     "FORECASTER_METRICS_TICKER_LIMIT": "2", "FORECASTER_PAGE_HINKLEY_THRESHOLD": "3"})
    config = CoreConfig.from_settings(settings, window=60)
    metrics = WorkerMetrics()
    monitor = ForecastMonitor(settings, metrics)
    bars = read_csv_bars([data_dir / "sp500-5yr-sample.csv.gz"], tickers=set(TICKERS)).bars
    days: dict = {}
    for bar in bars[: 300 * len(TICKERS)]:
        days.setdefault(bar.date, []).append(bar)
    ordered = list(days.values())
    sigma_per_width = 1.0 / (2 * NormalDist().inv_cdf(0.5 + settings.interval_levels[-1] / 2))
    widest = f"width_{round(settings.interval_levels[-1] * 100)}"
    states: dict = {}
    standardized: dict[str, list[float]] = {}  # each ticker's standardized errors, in order
    reference = PageHinkleys(settings.page_hinkley_threshold)  # for the monitor's delta and min_samples
    since: dict[str, int] = {}  # scores since each ticker's last alarm
    alarms: Counter[str] = Counter()
    most_alarms_in_a_batch = 0
    seen_states = set()
    start = 0
    for size in [1, 1, 1, 1, 1, 1, 3, 9, 2, 70] * 3:
        results, alarms_before = [], alarms.copy()
        for day in ordered[start: start + size]:
            stepped = step_many([states.get(b.ticker) for b in day], day, config)
            for bar, result in zip(day, stepped, strict=True):
                states[bar.ticker] = result.state
                results.append((bar, result))
                if not result.scores or result.scores[0]["horizon"] != settings.horizons[0]:
                    continue
                score = result.scores[0]
                sigma = score[widest] * sigma_per_width
                if sigma <= 0:
                    continue
                standardized.setdefault(bar.ticker, []).append(abs(score["error"]) / sigma)
        for ticker, xs in standardized.items():  # the textbook test over each ticker's errors so far
            plain = plain_page_hinkley(xs, reference.threshold, reference.delta, reference.min_samples)
            alarms[ticker] = len(plain)
            if plain:
                since[ticker] = len(xs) - 1 - plain[-1]
        start += size
        monitor.observe_batch(results, 0.001)
        most_alarms_in_a_batch = max(most_alarms_in_a_batch, *(alarms - alarms_before).values(), 0)

        def exported(name: str, ticker: str) -> float | None:
            return metrics.registry.get_sample_value(name, {"ticker": ticker})

        labelled = monitor.labelled - {"other"}
        for ticker in labelled:
            state = exported("forecaster_error_drift_state", ticker)
            assert state == float(since.get(ticker, 5) < 5), ticker
            seen_states.add(state)
            assert exported("forecaster_error_drift_alarms_total", ticker) == alarms[ticker]
            bar, result = [(b, r) for b, r in results if b.ticker == ticker][-1]
            assert exported("forecaster_predicted_close", ticker) == result.predictions[0]["predicted_close"]
            assert exported("forecaster_actual_close", ticker) == bar.close
        assert exported("forecaster_error_drift_alarms_total", "other") == sum(
            count for ticker, count in alarms.items() if ticker not in labelled)
    assert len(monitor.labelled - {"other"}) == 2
    assert seen_states == {0.0, 1.0}
    assert most_alarms_in_a_batch > 1


def test_a_ticker_back_after_a_rebalance_exports_its_rolling_figures_afresh(data_dir: Path) -> None:
    settings = load({"FORECASTER_ROLLING_WINDOW": "20", "FORECASTER_MODEL": "naive"})
    config = CoreConfig.from_settings(settings, window=60)
    metrics = WorkerMetrics()
    monitor = ForecastMonitor(settings, metrics)
    bars = read_csv_bars([data_dir / "sp500-5yr-sample.csv.gz"], tickers=set(TICKERS)).bars
    days: dict = {}
    for bar in bars[: 100 * len(TICKERS)]:
        days.setdefault(bar.date, []).append(bar)
    partition_of = {ticker: i % 2 for i, ticker in enumerate(TICKERS)}
    gone = [ticker for ticker in TICKERS if partition_of[ticker] == 1]
    monitor.observe_partitions(partition_of)

    def rolling_mae(ticker: str) -> float | None:
        labels = {"ticker": ticker, "model": "naive"}
        return metrics.registry.get_sample_value("forecaster_rolling_mae", labels)

    states: dict = {}
    since_back: dict[str, list[float]] = {}
    for i, day in enumerate(days.values()):
        if i == 50:  # the odd partition goes to another worker, then comes back
            monitor.retain_partitions({0})
            assert [rolling_mae(ticker) for ticker in gone] == [None, None]
            monitor.retain_partitions({0, 1})
            monitor.observe_partitions(partition_of)
            since_back = {}
        results = step_many([states.get(b.ticker) for b in day], day, config)
        for bar, result in zip(day, results, strict=True):
            states[bar.ticker] = result.state
            since_back.setdefault(bar.ticker, []).extend(abs(s["error"]) for s in result.scores)
        monitor.observe_batch(list(zip(day, results, strict=True)), 0.001)
    for ticker in gone:
        assert rolling_mae(ticker) == pytest.approx(np.mean(since_back[ticker][-20:]), rel=1e-12)


def test_scores_and_interval_hits_are_counted_for_every_horizon(data_dir: Path) -> None:
    # Batches of several days, so that a batch holds both horizons' scores, some of a bar's first 5
    # (horizon 1 scored, horizon 5 not yet).
    settings = load({"FORECASTER_MODEL": "naive", "FORECASTER_HORIZONS": "1,5"})
    config = CoreConfig.from_settings(settings, window=60)
    metrics = WorkerMetrics()
    monitor = ForecastMonitor(settings, metrics)

    def exported() -> dict[tuple[str, str], float | None]:
        sample = metrics.registry.get_sample_value
        counts = {("scores", h): sample("forecaster_scores_by_horizon_total", {"horizon": h}) for h in "15"}
        for level in ("0.8", "0.95"):
            counts |= {(level, h): sample("forecaster_interval_hits_by_horizon_total",
                                          {"level": level, "horizon": h}) for h in "15"}
        return counts

    assert set(exported().values()) == {0.0}  # the series exist before the first score
    # Each horizon as a number, for the calibration alert's sampling error.
    days_ahead = [metrics.registry.get_sample_value("forecaster_horizon_days", {"horizon": h}) for h in "15"]
    assert days_ahead == [1, 5]
    bars = read_csv_bars([data_dir / "sp500-5yr-sample.csv.gz"], tickers=set(TICKERS)).bars
    days: dict = {}
    for bar in bars[: 120 * len(TICKERS)]:
        days.setdefault(bar.date, []).append(bar)
    ordered = list(days.values())
    states: dict = {}
    scores: list[dict] = []
    start = 0
    for size in [3, 1, 8, 2, 20] * 6:
        results = []
        for day in ordered[start: start + size]:
            stepped = step_many([states.get(b.ticker) for b in day], day, config)
            for bar, result in zip(day, stepped, strict=True):
                states[bar.ticker] = result.state
                results.append((bar, result))
                scores += result.scores
        start += size
        monitor.observe_batch(results, 0.001)

    expected: dict[tuple[str, str], float | None] = {}
    for h in (1, 5):
        mine = [s for s in scores if s["horizon"] == h]
        expected[("scores", str(h))] = len(mine)
        expected |= {(level, str(h)): sum(s[f"inside_{round(float(level) * 100)}"] for s in mine)
                     for level in ("0.8", "0.95")}
    assert exported() == expected
    assert expected[("scores", "5")] == expected[("scores", "1")] - 4 * len(TICKERS)  # 4 days unscored
    assert expected[("0.8", "5")] != expected[("0.8", "1")]
    # The figures that were the shortest horizon's stay so.
    assert metrics.registry.get_sample_value("forecaster_scores_total", {"model": "naive"}) == (
        expected[("scores", "1")])
    assert metrics.registry.get_sample_value("forecaster_interval_hits_total", {"level": "0.8"}) == (
        expected[("0.8", "1")])
