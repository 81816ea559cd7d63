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
from models.core.intervals import conformal_quantiles, rank_table
from producers.readers import read_csv_bars
from tests.core.helpers import SP500_SAMPLE

LEVELS = {"80": 0.80, "95": 0.95}


@pytest.fixture(scope="module")
def last_year_scores(sp500_bars: list[Bar]) -> list[dict]:
    """Scores of the ARIMA's predictions over the last year of the sample (2017-02-08 on), after a
    year of warm-up: the window fills and the calibration window is full when the year starts."""
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
    result = run_backtest(_random_walk(sigma, 4000, ar), CoreConfig(model=model, order=(1, 1, 0)))
    predictions = [p for p in result.predictions if not p["warmup"]][250:]
    for label, level in LEVELS.items():
        z = NormalDist().inv_cdf(0.5 + level / 2)
        half_width = np.log([p[f"upper_{label}"] / p["predicted_close"] for p in predictions])
        lower_half = np.log([p["predicted_close"] / p[f"lower_{label}"] for p in predictions])
        np.testing.assert_allclose(half_width, lower_half, rtol=1e-9)  # symmetric in log price
        # The textbook z * sigma, widened a little by the finite-sample conformal rank and by the
        # noise of a scale that must follow volatility.
        assert 1.0 < half_width.mean() / (z * sigma) < 1.08, label
        assert result.pooled[f"coverage_{label}"] == pytest.approx(level, abs=0.01), label
    if model == "arima":
        phi, sigma2 = result.states["SYN"].arima_params
        assert phi == pytest.approx(ar, abs=0.05) and np.sqrt(sigma2) == pytest.approx(sigma, rel=0.05)


def test_conformal_rank_is_exact_where_floating_point_is_not() -> None:
    assert np.ceil((99 + 1) * 0.55) == 56  # 55.00000000000001
    assert rank_table(100, (0.55,))[99, 0] == 55


def test_too_few_residuals_fall_back_to_a_widened_gaussian_quantile() -> None:
    residuals = np.full((2, 5), np.inf)
    residuals[0, :5] = [0.1, 0.2, 0.3, 0.4, 0.5]
    quantiles, short = conformal_quantiles(residuals, np.array([5, 0]), (0.5, 0.9))
    assert short.tolist() == [True, True]
    assert quantiles[0, 0] == 0.3  # rank ceil(6 * 0.5) = 3 of 5 residuals
    assert quantiles[0, 1] == quantiles[1, 1] > NormalDist().inv_cdf(0.95)  # rank 6 > 5: fallback


def test_spells_without_trades_leave_the_intervals_finite(data_dir: Path) -> None:
    # Vienthong.csv: TEL did not trade on 654 of its 1,071 days (VTC 330), so its scale falls to the
    # floor and the next move is a huge standardized residual; clipped, it cannot blow the bands up.
    result = run_backtest(read_csv_bars([data_dir / "vgi" / "Vienthong.csv"]).bars, CoreConfig(model="arima"))
    assert len(result.predictions) == 4396
    for p in result.predictions:
        assert 0 < p["lower_95"] <= p["lower_80"] <= p["predicted_close"] <= p["upper_80"] <= p["upper_95"]
        assert p["upper_95"] < 2 * p["predicted_close"], p
    for ticker in ("TEL", "VTC"):
        assert result.per_ticker[ticker]["coverage_95"] == pytest.approx(0.95, abs=0.03)


def test_a_level_in_warm_up_is_never_narrower_than_a_lower_calibrated_one() -> None:
    residuals = np.full((1, 10), np.inf)
    residuals[0, :4] = [6.0, 7.0, 8.0, 9.0]  # a wild start: calibrated 50 % is 8, 95 % falls back
    quantiles, short = conformal_quantiles(residuals, np.array([4]), (0.5, 0.95))
    assert short[0] and quantiles[0, 0] == 8.0 and quantiles[0, 1] == 9.0
