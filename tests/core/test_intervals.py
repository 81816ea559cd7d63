"""Prediction intervals: calibrated on real data in calm and volatile times, textbook on a known process."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from models.backtest import run_backtest
from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.intervals import MIN_RESIDUALS, Calibration, gaussian_quantile, shape_multipliers
from producers.readers import read_csv_bars
from tests.core.helpers import SP500_SAMPLE

LEVELS = {"80": 0.80, "95": 0.95}


@pytest.fixture(scope="module")
def last_year_scores(sp500_bars: list[Bar]) -> list[dict]:
    """Scores of the ARIMA's predictions over the last year of the sample (2017-02-08 on), after a
    year of warm-up: the window fills and the calibration has a year of residuals when the year starts."""
    sample = set(SP500_SAMPLE)
    bars = [b for b in sp500_bars if b.ticker in sample and b.date >= dt.date(2016, 2, 8)]
    result = run_backtest(bars, CoreConfig(model="arima"))
    scores = [s for s in result.scores if s["target_date"] >= "2017-02-08"]
    assert not any(s["warmup"] for s in scores)
    assert len({s["ticker"] for s in scores}) >= 50 and len(scores) > 50 * 240
    return scores


def _coverage(scores: list[dict], label: str) -> float:
    return float(np.mean([s[f"inside_{label}"] for s in scores]))


def test_pooled_coverage_is_within_two_points_of_nominal(last_year_scores: list[dict]) -> None:
    for label, level in LEVELS.items():
        assert _coverage(last_year_scores, label) == pytest.approx(level, abs=0.02), label


def test_coverage_holds_in_the_calmer_and_the_more_volatile_half(last_year_scores: list[dict]) -> None:
    # Realised volatility of a day: the cross-sectional mean squared log return over the 21 trading
    # days ending that day. Days above the median form the volatile half.
    squared: dict[str, list[float]] = {}
    for s in last_year_scores:
        squared.setdefault(s["target_date"], []).append(np.log(s["actual_close"] / s["naive_close"]) ** 2)
    days = sorted(squared)
    daily = np.array([np.mean(squared[d]) for d in days])
    realised = np.array([daily[max(0, k - 20) : k + 1].mean() for k in range(len(days))])
    volatile_days = {d for d, v in zip(days, realised, strict=True) if v > np.median(realised)}
    calm = [s for s in last_year_scores if s["target_date"] not in volatile_days]
    volatile = [s for s in last_year_scores if s["target_date"] in volatile_days]
    assert np.mean([np.log(s["actual_close"] / s["naive_close"]) ** 2 for s in volatile]) > 1.3 * np.mean(
        [np.log(s["actual_close"] / s["naive_close"]) ** 2 for s in calm])
    for label, level in LEVELS.items():
        assert _coverage(calm, label) == pytest.approx(level, abs=0.02), ("calm", label)
        assert _coverage(volatile, label) == pytest.approx(level, abs=0.02), ("volatile", label)


def _random_walk(sigma: float, n: int, ar: float = 0.0) -> list[Bar]:
    rng = np.random.default_rng(5)
    returns = np.zeros(n)
    for t in range(1, n):
        returns[t] = ar * returns[t - 1] + rng.normal(scale=sigma)
    closes = 100 * np.exp(np.cumsum(returns))
    day = dt.date(2000, 1, 3)
    return [Bar("SYN", day + dt.timedelta(days=k), c, c, c, c, 1.0) for k, c in enumerate(closes)]


@pytest.mark.parametrize(("model", "ar"), [("naive", 0.0), ("arima", 0.3)])
def test_a_process_with_known_variance_gets_the_textbook_interval(model: str, ar: float) -> None:
    sigma = 0.01
    # Centred on the model: an AR(1) process is the one case where the model's centre beats naive's.
    result = run_backtest(_random_walk(sigma, 4000, ar),
                          CoreConfig(model=model, order=(1, 1, 0), interval_centre="model"))
    predictions = [p for p in result.predictions if not p["warmup"]][250:]
    scores = [s for s in result.scores if not s["warmup"]][250:]
    for label, level in LEVELS.items():
        z = NormalDist().inv_cdf(0.5 + level / 2)
        half_width = np.log([p[f"upper_{label}"] / p["predicted_close"] for p in predictions])
        lower_half = np.log([p["predicted_close"] / p[f"lower_{label}"] for p in predictions])
        np.testing.assert_allclose(half_width, lower_half, rtol=1e-9)  # symmetric in log price
        # The textbook z * sigma, give or take the noise of a scale that must follow volatility and
        # the Student-t start of the multipliers (a few % wide at 95 % on Gaussian residuals, until
        # their steps have learnt the shape).
        assert 0.97 < half_width.mean() / (z * sigma) < 1.07, label
        assert np.mean([s[f"inside_{label}"] for s in scores]) == pytest.approx(level, abs=0.01), label
    if model == "arima":
        phi, sigma2 = result.states["SYN"].arima_params
        assert phi == pytest.approx(ar, abs=0.05) and np.sqrt(sigma2) == pytest.approx(sigma, rel=0.05)


def _misses(residuals: np.ndarray, levels: tuple[float, ...]) -> tuple[Calibration, np.ndarray]:
    """The calibration after ``residuals`` (|z|, one ticker), and which calibrated intervals missed."""
    calibration = Calibration.empty(1, levels)
    misses = []
    for z in residuals:
        half_widths, short = calibration.quantiles(levels, 5.0)
        if not short[0]:
            misses.append(z > half_widths[0])
        calibration = calibration.update(np.array([z]), decay=0.995, rate=0.005, levels=levels, df=5.0)
    return calibration, np.array(misses)


@pytest.mark.parametrize("df", [3.0, 5.0, 30.0])
def test_the_offsets_reach_the_nominal_miss_rate_whatever_the_residuals_shape(df: float) -> None:
    # The shape is a Student-t(5); Gaussian residuals (df 30) or heavier tails (df 3) need other
    # multipliers, which the online conformal offsets find.
    _, misses = _misses(np.abs(np.random.default_rng(1).standard_t(df, size=40_000)), (0.8, 0.95))
    np.testing.assert_allclose(misses[-20_000:].mean(axis=0), [0.2, 0.05], atol=0.006)


def test_a_gaussian_shape_moves_the_80_multiplier_up_and_the_95_down() -> None:
    levels = (0.8, 0.95)
    calibration, _ = _misses(np.abs(np.random.default_rng(2).normal(size=20_000)), levels)
    gaussian = np.array([gaussian_quantile(level) for level in levels]) / np.sqrt(2 / np.pi)  # over E|Z|
    start = shape_multipliers(levels, 5.0)
    assert start[0] < gaussian[0] and start[1] > gaussian[1]
    np.testing.assert_allclose(start + calibration.offsets[0], gaussian, rtol=0.04)


def test_days_on_the_centre_count_towards_coverage_from_the_start() -> None:
    # 60 % of the days a close equal to the centre (no trade): the 80 % interval needs only the
    # 50 % quantile of the moves, the 95 % one their 87.5 % quantile; the offsets need not move.
    rng = np.random.default_rng(3)
    residuals = np.where(rng.random(4000) < 0.6, 0.0, np.abs(rng.standard_t(5.0, size=4000)))
    calibration, misses = _misses(residuals, (0.8, 0.95))
    np.testing.assert_allclose(misses.mean(axis=0), [0.2, 0.05], atol=0.015)
    assert np.abs(calibration.offsets).max() < 0.15


def test_too_few_residuals_fall_back_to_a_widened_gaussian_quantile() -> None:
    levels = (0.5, 0.9)
    calibration = Calibration.empty(2, levels)
    for _ in range(MIN_RESIDUALS - 1):
        calibration = calibration.update(np.array([1.0, np.nan]), 0.99, 0.01, levels, 5.0)
    half_widths, short = calibration.quantiles(levels, 5.0)
    assert short.tolist() == [True, True] and calibration.counts.tolist() == [MIN_RESIDUALS - 1, 0]
    assert half_widths[0, 1] == half_widths[1, 1] == 1.5 * NormalDist().inv_cdf(0.95)
    calibration = calibration.update(np.array([1.0, np.nan]), 0.99, 0.01, levels, 5.0)
    half_widths, short = calibration.quantiles(levels, 5.0)
    assert short.tolist() == [False, True]
    # Every residual was 1, so the level is 1: the half-widths are the multipliers.
    np.testing.assert_allclose(half_widths[0], shape_multipliers(levels, 5.0) + calibration.offsets[0])


def test_a_higher_level_is_never_narrower_than_a_lower_one() -> None:
    levels = (0.8, 0.95)
    gap = shape_multipliers(levels, 5.0) @ [1, -1]  # c_80 - c_95 < 0
    crossed = Calibration(np.array([20.0]), np.array([20.0]), np.array([0.0]), np.array([20]),
                          np.array([[0.0, gap - 0.5]]))  # the 95 % multiplier 0.5 below the 80 %
    half_widths, _ = crossed.quantiles(levels, 5.0)
    assert half_widths[0, 1] == half_widths[0, 0] == shape_multipliers(levels, 5.0)[0]


def test_spells_without_trades_leave_the_intervals_finite(data_dir: Path) -> None:
    # Vienthong.csv: TEL did not trade on 654 of its 1,071 days (VTC 330), so its scale falls to the
    # floor and the next move is a huge standardized residual; clipped, it cannot blow the bands up.
    result = run_backtest(read_csv_bars([data_dir / "vgi" / "Vienthong.csv"]).bars, CoreConfig(model="arima"))
    assert len(result.predictions) == 4396
    for p in result.predictions:
        # Centred on the last close, not on the ARIMA's prediction, which may lie outside them;
        # where the close has not moved on most recent days, the 80 % interval is that close.
        assert 0 < p["lower_95"] <= p["lower_80"] <= p["upper_80"] <= p["upper_95"]
        assert p["upper_95"] < 2 * p["predicted_close"], p
    for ticker in ("TEL", "VTC"):
        assert result.per_ticker[ticker]["coverage_95"] == pytest.approx(0.95, abs=0.03)
