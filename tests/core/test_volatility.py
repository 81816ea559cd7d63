"""The volatility model that scales the intervals, and the regime a prediction is made in."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.state import TickerState
from models.core.step import step_many
from models.core.volatility import (
    REGIME_DAYS,
    REGIME_MIN_HISTORY,
    daily_variance,
    forecast,
    regimes,
    trailing_vol_rank,
)
from tests.core.helpers import run

CONFIG = CoreConfig(model="arima", window=100, refit_every=10)
TICKERS = ("AAPL", "GE", "JPM", "NKE")


def test_sigma_is_the_blend_of_bias_corrected_means_of_daily_variance(
        by_ticker: dict[str, list[Bar]]) -> None:
    bars = by_ticker["JPM"][:40]
    sigmas = [r.predictions[0]["sigma"] for r in run(bars, CONFIG)]
    prev = np.r_[np.nan, [b.close for b in bars[:-1]]]
    columns = [np.array([getattr(b, k) for b in bars]) for k in ("open", "high", "low", "close")]
    daily = daily_variance(*columns, prev, CONFIG.vol_range_weight)
    for m in (1, 2, 39, 40):
        blend = 0.0
        for decay, weight in zip(CONFIG.vol_decays, CONFIG.vol_weights, strict=True):
            weights = (1 - decay) * decay ** np.arange(m - 1, -1, -1)
            blend += weight * (weights @ daily[:m]) / weights.sum()
        assert sigmas[m - 1] == pytest.approx(np.sqrt(blend), rel=1e-12)


def test_the_first_bar_is_scaled_by_its_range_alone(by_ticker: dict[str, list[Bar]]) -> None:
    bar = by_ticker["GE"][0]
    sigma = run([bar], CONFIG)[0].predictions[0]["sigma"]
    assert sigma == pytest.approx(np.log(bar.high / bar.low) / np.sqrt(4 * np.log(2)), rel=1e-12)


@pytest.mark.parametrize("ticker", ["AAPL", "GE"])
def test_a_changed_future_leaves_every_earlier_prediction_bit_identical(by_ticker: dict[str, list[Bar]],
                                                                       ticker: str) -> None:
    bars = by_ticker[ticker][:260]
    cut = 200
    storm = [dataclasses.replace(b, open=b.open * 1.3, high=b.high * 1.5, low=b.low * 0.7,
                                 close=b.close * 1.2) for b in bars[cut:]]
    base = run(bars, CONFIG)
    perturbed = run(bars[:cut] + storm, CONFIG)
    truncated = run(bars[:cut], CONFIG)
    for i in range(cut):
        assert base[i].predictions == perturbed[i].predictions == truncated[i].predictions
        assert base[i].state == perturbed[i].state == truncated[i].state
    assert base[cut].predictions[0]["sigma"] != perturbed[cut].predictions[0]["sigma"]


def test_batched_equals_one_by_one_for_the_scale_the_regime_and_the_state(
        by_ticker: dict[str, list[Bar]]) -> None:
    days = 150
    alone = {t: run(by_ticker[t][:days], CONFIG) for t in TICKERS}
    states: dict[str, TickerState | None] = dict.fromkeys(TICKERS)
    for k in range(days):
        # A changing batch composition: every other day without its first ticker.
        batch = TICKERS[k % 2:]
        results = step_many([states[t] for t in batch], [by_ticker[t][k] for t in batch], CONFIG)
        for t, result in zip(batch, results, strict=True):
            states[t] = result.state
    # Tickers skipped on odd days were stepped on different days: compare only the full-batch one.
    for t in TICKERS[1:]:
        state = states[t]
        assert state is not None and state == alone[t][-1].state
        assert np.array_equal(state.variance_ewmas, alone[t][-1].state.variance_ewmas)


def test_trailing_rank_and_regime_follow_their_definition(by_ticker: dict[str, list[Bar]]) -> None:
    closes = np.log([b.close for b in by_ticker["NKE"][:300]])
    windows = [closes[k - 100:k] for k in range(100, 300)] + [closes[:60], closes[:REGIME_DAYS + 5]]
    ranks = trailing_vol_rank(windows)
    for window, rank in zip(windows, ranks, strict=True):
        returns = np.diff(window)
        if returns.size - REGIME_DAYS + 1 < REGIME_MIN_HISTORY:
            assert np.isnan(rank)
            continue
        rms = np.array([np.sqrt(np.mean(returns[j - REGIME_DAYS:j] ** 2))
                        for j in range(REGIME_DAYS, returns.size + 1)])
        assert rank == pytest.approx(np.mean(rms <= rms[-1] * (1 + 1e-12)))
    # One by one, the same ranks as batched with windows of other sizes.
    assert np.array_equal(np.array([trailing_vol_rank([w])[0] for w in windows]), ranks, equal_nan=True)
    labels = regimes(ranks)
    assert {"calm", "middle", "volatile"} <= set(labels) and labels[-1] is None


def test_records_carry_the_regime_and_scores_repeat_the_scored_ones(by_ticker: dict[str, list[Bar]]) -> None:
    results = run(by_ticker["AAPL"][:120], CONFIG)
    first_with_regime = REGIME_DAYS + REGIME_MIN_HISTORY  # closes a window needs for one regime
    assert all(r.predictions[0]["vol_regime"] is None for r in results[: first_with_regime - 1])
    assert all(r.predictions[0]["vol_regime"] in ("calm", "middle", "volatile")
               for r in results[first_with_regime - 1:])
    for made, scored in itertools.pairwise(results):
        assert scored.scores and scored.scores[0]["vol_regime"] == made.predictions[0]["vol_regime"]


def test_the_state_round_trip_keeps_the_variance_means(by_ticker: dict[str, list[Bar]]) -> None:
    state = run(by_ticker["GE"][:30], CONFIG)[-1].state
    back = TickerState.from_bytes(state.to_bytes())
    assert back == state and np.array_equal(back.variance_ewmas, state.variance_ewmas)
    assert back.pending == state.pending


def test_the_h_day_variance_reverts_the_short_mean_to_the_long_one() -> None:
    decays, weights = (0.9, 0.995), (0.3, 0.7)
    ewmas = np.array([[2e-3 * (1 - 0.9), 1e-3 * (1 - 0.995)]])  # after one bar: means 2e-3 and 1e-3
    horizons = (1, 2, 5, 20, 260)
    total = forecast(ewmas, 1, decays, weights, horizons)[0]
    # Day j ahead: 1e-3 + 0.3 * 0.9 ** (j - 1) * (2e-3 - 1e-3), summed over the first h days.
    expected = [sum(1e-3 + 0.3 * 0.9 ** (j - 1) * 1e-3 for j in range(1, h + 1)) for h in horizons]
    np.testing.assert_allclose(total, expected, rtol=1e-12)
    flat = forecast(np.array([[1e-3 * 0.1, 1e-3 * 0.005]]), 1, decays, weights, horizons)[0]
    np.testing.assert_allclose(flat, 1e-3 * np.array(horizons), rtol=1e-12)  # no excess: h times a day's
    # One day ahead: the blend of the two means as it was before horizons, bit for bit.
    one_day = 0.0 + 0.3 * (ewmas[0, 0] / (1.0 - 0.9 ** 1.0)) + 0.7 * (ewmas[0, 1] / (1.0 - 0.995 ** 1.0))
    assert forecast(ewmas, 1, decays, weights, (1,))[0, 0] == one_day
