"""The multi-horizon bench's metrics on hand-made numbers: no S&P file, no ``arch``."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from bench.horizon_bench import (
    CORE,
    PointScores,
    drift_points,
    garch_sum_variance,
    multiplier_row,
    naive_scale,
    point_scores,
    scaled_naive,
    simulated_factors,
)
from bench.interval_bench import Forecast, GarchPath, Pooled, Series, student_factor


def _path(**values: float) -> GarchPath:
    return GarchPath(**{k: np.array([v]) for k, v in values.items()})


def test_the_garch_h_day_variance_is_the_sum_of_the_step_forecasts() -> None:
    path = _path(variance=2e-4, omega=1e-6, alpha=0.08, beta=0.9, nu=6.0)
    steps = [2e-4]
    for _ in range(4):
        steps.append(1e-6 + 0.98 * steps[-1])
    assert garch_sum_variance(path, 1)[0] == 2e-4
    assert garch_sum_variance(path, 5)[0] == pytest.approx(sum(steps), rel=1e-12)


def test_the_garch_h_day_variance_starting_at_the_long_run_level_is_h_times_it() -> None:
    level = 1e-6 / (1 - 0.98)
    path = _path(variance=level, omega=1e-6, alpha=0.08, beta=0.9, nu=6.0)
    assert garch_sum_variance(path, 20)[0] == pytest.approx(20 * level, rel=1e-12)


def test_the_scaled_naive_interval_is_the_one_day_interval_times_root_h() -> None:
    one_day = Forecast({0.8: np.array([-0.01, np.nan])}, {0.8: np.array([0.012, np.nan])},
                       np.array([1e-4, np.nan]))
    week = scaled_naive(one_day, 5)
    assert week.upper[0.8][0] - week.lower[0.8][0] == pytest.approx(0.022 * math.sqrt(5))
    assert week.lower[0.8][0] == pytest.approx(-0.01 * math.sqrt(5))
    assert week.variance is not None and week.variance[0] == pytest.approx(5e-4)
    assert np.isnan(week.upper[0.8][1])


def test_the_mase_scale_is_the_mean_absolute_h_day_change_up_to_the_first_scored_bar() -> None:
    log_close = np.log([10.0, 11.0, 9.0, 12.0, 12.0, 1000.0])
    changes = np.abs(np.log([9 / 10, 12 / 11, 12 / 9]))  # the 2-day changes up to bar 4
    assert naive_scale(log_close, 2, 4) == pytest.approx(changes.mean())
    assert naive_scale(log_close, 2, 4) == naive_scale(log_close[:5], 2, 4)  # later bars change nothing


def test_drift_is_h_times_the_mean_of_the_last_252_returns() -> None:
    r = np.random.default_rng(5).normal(0.001, 0.02, size=300)
    s = Series(np.array([f"d{k:03d}" for k in range(301)]), np.concatenate([[0.0], np.cumsum(r)]))
    drift = drift_points(s, 5)
    assert np.isnan(drift[251])
    assert drift[252] == pytest.approx(5 * r[:252].mean())
    assert drift[299] == pytest.approx(5 * r[47:299].mean())


def _trend_scores(horizon: int, core: Callable[[Series], np.ndarray]) -> PointScores:
    """Two tickers on steady log trends, scored from bar 260 on: drift is exact, naive off by h slopes."""
    series, rows = {}, []
    for ticker, slope in (("UP", 0.002), ("DOWN", -0.001)):
        bars = 320
        s = Series(np.array([f"2020-{k:04d}" for k in range(bars)]), 3.0 + slope * np.arange(bars))
        series[ticker] = s
        origin = np.arange(260, bars - horizon)
        rows.append((ticker, origin, s.ahead(horizon)[origin]))
    pooled = Pooled(np.concatenate([r for _, _, r in rows]), np.zeros(sum(len(o) for _, o, _ in rows), int),
                    np.concatenate([np.full(len(o), t) for t, o, _ in rows]),
                    np.concatenate([o for _, o, _ in rows]), {})
    return point_scores(pooled, series, {t: core(s) for t, s in series.items()}, horizon)


def test_on_steady_trends_naive_scores_one_and_drift_zero() -> None:
    scores = _trend_scores(5, lambda s: np.zeros(s.r.size))  # a core that says naive's
    assert scores.mase["naive"] == pytest.approx(1.0)
    assert scores.mase["drift"] == pytest.approx(0.0, abs=1e-9)
    assert scores.mase["core"] == scores.mase["naive"]
    assert scores.dm["core"].p_value == 1.0
    assert scores.n == 2 * (320 - 5 - 260)


def test_a_core_forecasting_the_opposite_move_has_twice_naives_mase() -> None:
    scores = _trend_scores(20, lambda s: -s.ahead(20))
    assert scores.mase["core"] == pytest.approx(2 * scores.mase["naive"])
    assert scores.lags >= 19  # 20-day errors of neighbouring days overlap by 19 days


def test_the_simulated_one_day_factors_are_the_student_t_quantiles() -> None:
    path = _path(variance=1e-4, omega=1e-6, alpha=0.08, beta=0.9, nu=5.0)
    simulated = simulated_factors(path, np.array([0]), 1, (0.8, 0.95), 200_000, np.random.default_rng(0))
    expected = [student_factor(lv, np.array([5.0]))[0] for lv in (0.8, 0.95)]
    assert simulated[0].tolist() == pytest.approx(expected, rel=0.01)


def test_a_simulated_long_horizon_sum_is_nearer_normal_than_the_daily_t() -> None:
    path = _path(variance=1e-4, omega=2e-6, alpha=0.05, beta=0.93, nu=4.0)
    simulated = simulated_factors(path, np.array([0]), 20, (0.8,), 100_000, np.random.default_rng(0))[0, 0]
    assert student_factor(0.8, np.array([4.0]))[0] < simulated < 1.2816


def test_the_core_multipliers_are_half_widths_over_sigma_within_and_across_tickers() -> None:
    sigma = np.array([0.01, 0.02, 0.01, 0.02])
    half = {0.8: np.array([1.0, 1.0, 1.2, 1.2]) * sigma, 0.95: np.array([2.0, 2.0, 2.0, 2.0]) * sigma}
    core = Forecast({lv: -h for lv, h in half.items()}, half, sigma ** 2)
    pooled = Pooled(np.zeros(4), np.zeros(4, int), np.array(["A", "A", "B", "B"]), np.arange(4), {CORE: core})
    cells = multiplier_row(pooled, 5).strip("| ").split(" | ")
    # 80 %: mean 1.1, constant within each ticker, 1.0 and 1.2 across (std 0.1 / mean 1.1); 95 %: 2.
    assert cells == ["5", "1.100", "0.0%", "9.1%", "2.000", "0.0%", "0.0%"]
