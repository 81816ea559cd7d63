"""Diebold-Mariano against naive (per ticker and over a panel), scale-free scores, the chronological split."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.dataset import Samples
from models.evaluation import diebold_mariano, evaluate, panel_diebold_mariano, split_by_date

errors = arrays(np.float64, 40, elements=st.floats(-5, 5, allow_nan=False))


@settings(deadline=None, max_examples=50)  # no timing in tests: the first call imports scipy
@given(errors, errors)
def test_dm_is_antisymmetric(a, b) -> None:
    forward, backward = diebold_mariano(a, b), diebold_mariano(b, a)
    assert forward.statistic == pytest.approx(-backward.statistic)
    assert forward.p_value == pytest.approx(backward.p_value)
    assert 0.0 <= forward.p_value <= 1.0


def test_dm_matches_the_textbook_statistic_for_one_step() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=120), 1.1 * rng.normal(size=120)
    d = a**2 - b**2
    dm = d.mean() / np.sqrt(d.var() / len(d))  # horizon 1: no autocovariance terms
    hln = np.sqrt((len(d) - 1) / len(d))
    assert diebold_mariano(a, b).statistic == pytest.approx(dm * hln)


def test_dm_rejects_mismatched_errors() -> None:
    with pytest.raises(ValueError, match="equal in length"):
        diebold_mariano(np.zeros(5), np.zeros(6))


def _samples(closes: np.ndarray, next_closes: np.ndarray, tickers: np.ndarray, days: np.ndarray) -> Samples:
    return Samples(np.zeros((len(closes), 1, 1)), np.log(next_closes / closes), closes, next_closes, tickers,
                   days - 1, days)


def _panel(seed: int, tickers: int = 4, days: int = 120) -> tuple[Samples, np.ndarray]:
    """Random-walk prices of ``tickers`` on the same ``days``, and forecasts slightly off naive."""
    rng = np.random.default_rng(seed)
    closes = 50 * np.exp(np.cumsum(0.01 * rng.normal(size=(tickers, days)), axis=1)).ravel()
    next_closes = closes * np.exp(0.01 * rng.normal(size=closes.size))
    names = np.repeat([f"T{i}" for i in range(tickers)], days)
    dates = np.tile(np.datetime64("2024-01-01") + np.arange(days), tickers)
    return _samples(closes, next_closes, names, dates), 0.003 * rng.normal(size=closes.size)


def test_naive_scores_itself_as_naive() -> None:
    closes = np.array([10.0, 10.5, 10.2, 10.8])
    test = _samples(closes, closes * 1.01, np.array(["A"] * 4), np.arange(4).astype("datetime64[D]"))
    e = evaluate(np.zeros(4), test, {"A": 0.3})
    assert e.metrics == e.naive_metrics and not e.beats_naive()
    assert (e.panel.relative_mae, e.panel.beating_naive, e.panel.dm.p_value) == (1.0, 0, 1.0)
    assert e.panel.mase == e.panel.naive_mase == pytest.approx(np.mean(closes * 0.01) / 0.3)


def test_one_ticker_at_100_times_the_price_changes_dollar_figures_only() -> None:
    test, predicted = _panel(5)
    scales = {f"T{i}": 0.5 for i in range(4)}
    before = evaluate(predicted, test, scales)
    dear = test.tickers == "T2"
    scaled = _samples(np.where(dear, 100, 1) * test.closes, np.where(dear, 100, 1) * test.next_closes,
                      test.tickers, test.target_dates)
    after = evaluate(predicted, scaled, {**scales, "T2": 50.0})
    assert after.metrics["mae"] > 10 * before.metrics["mae"]  # the dollar figure is T2's now
    assert after.panel.relative_mae == pytest.approx(before.panel.relative_mae, rel=1e-12)
    assert after.panel.mase == pytest.approx(before.panel.mase, rel=1e-12)
    assert after.panel.beating_naive == before.panel.beating_naive
    assert after.panel.dm.statistic == pytest.approx(before.panel.dm.statistic, rel=1e-9)
    for a, b in zip(after.per_ticker, before.per_ticker, strict=True):
        assert a.relative_mae == pytest.approx(b.relative_mae, rel=1e-12)
        assert a.dm.statistic == pytest.approx(b.dm.statistic, rel=1e-9)


def test_per_ticker_and_panel_scores_are_what_their_definitions_say() -> None:
    test, predicted = _panel(6)
    scales = {"T0": 0.4, "T1": 0.6, "T2": 0.5, "T3": 0.7}
    e = evaluate(predicted, test, scales)
    forecast = test.closes * np.exp(predicted)
    for score in e.per_ticker:
        rows = test.tickers == score.ticker
        mae = np.mean(np.abs(test.next_closes[rows] - forecast[rows]))
        naive_mae = np.mean(np.abs(test.next_closes[rows] - test.closes[rows]))
        assert score.relative_mae == pytest.approx(mae / naive_mae)
        assert score.mase == pytest.approx(mae / scales[score.ticker])
    ratios = np.array([s.relative_mae for s in e.per_ticker])
    assert e.panel.relative_mae == pytest.approx(np.exp(np.log(ratios).mean()))
    assert e.panel.beating_naive == int((ratios < 1).sum())
    assert e.panel.mase == pytest.approx(np.mean([s.mase for s in e.per_ticker]))


def test_panel_dm_matches_statsmodels_hac_regression() -> None:
    """The reference: an OLS of the per-date mean differential on a constant with statsmodels'
    Newey-West (HAC, Bartlett) covariance, t distribution, no small-sample correction."""
    import statsmodels.api as sm

    t = np.arange(60)
    model = np.r_[np.abs(np.sin(1.3 * t)) + 0.05 * np.cos(t), np.abs(np.cos(0.7 * t)) - 0.1]
    naive = np.r_[np.abs(np.sin(1.3 * t + 0.4)), np.abs(np.cos(0.7 * t + 0.9)) + 0.02]
    dates = np.r_[t, t]
    per_date = (model - naive).reshape(2, 60).mean(axis=0)
    for lags in (0, 3, 8):
        reference = sm.OLS(per_date, np.ones(60)).fit(
            cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False}, use_t=True)
        ours = panel_diebold_mariano(dates, model, naive, lags=lags)
        assert ours.statistic == pytest.approx(reference.tvalues[0], rel=1e-10)
        assert ours.p_value == pytest.approx(reference.pvalues[0], rel=1e-8)
    default = panel_diebold_mariano(dates, model, naive)  # Newey-West's rule: 3 lags for 60 dates
    assert default == panel_diebold_mariano(dates, model, naive, lags=3)
    assert default.statistic < 0 and default.p_value < 0.05  # the model's losses are lower here


def test_panel_dm_counts_each_date_once_however_many_tickers_share_it() -> None:
    """Tickers that move together are not independent evidence: copies of a ticker change nothing,
    where a test pooling ticker-days would see sqrt(copies) times the statistic."""
    rng = np.random.default_rng(7)
    days = np.arange(200)
    model, naive = np.abs(rng.normal(size=200)), np.abs(rng.normal(size=200))
    one = panel_diebold_mariano(days, model, naive)
    five = panel_diebold_mariano(np.tile(days, 5), np.tile(model, 5), np.tile(naive, 5))
    assert five.statistic == pytest.approx(one.statistic) and five.p_value == pytest.approx(one.p_value)
    shuffled = rng.permutation(1000)
    again = panel_diebold_mariano(np.tile(days, 5)[shuffled], np.tile(model, 5)[shuffled],
                                  np.tile(naive, 5)[shuffled])
    assert again.statistic == pytest.approx(one.statistic)


@settings(deadline=None, max_examples=50)
@given(errors, errors)
def test_panel_dm_is_antisymmetric(a, b) -> None:
    days = np.arange(40) // 2  # two tickers a date
    forward, backward = panel_diebold_mariano(days, a, b), panel_diebold_mariano(days, b, a)
    assert forward.statistic == pytest.approx(-backward.statistic)
    assert forward.p_value == pytest.approx(backward.p_value)
    assert 0.0 <= forward.p_value <= 1.0


def test_panel_dm_rejects_too_few_dates() -> None:
    with pytest.raises(ValueError, match="at least 3 dates"):
        panel_diebold_mariano(np.array([1, 1, 2]), np.zeros(3), np.ones(3))


def test_split_periods_are_ordered_and_cover_the_paper_window() -> None:
    days = [dt.date(2021, 1, 1) + dt.timedelta(days=i) for i in range(400)]
    split = split_by_date(days, test_start=dt.date(2021, 12, 1), test_days=30)
    assert split.train_end < split.validation_start < split.test_start == dt.date(2021, 12, 1)
    assert split.test_end == dt.date(2021, 12, 30)
    with pytest.raises(ValueError, match="no target dates on or after"):
        split_by_date(days, test_start=dt.date(2030, 1, 1))
    # Was "only -999999702 dates before the test period".
    with pytest.raises(ValueError, match=f"^a test period of 999,999,999 dates leaves none before it to "
                                         f"train on: the data have {len(set(days)):,}$"):
        split_by_date(days, test_days=999_999_999)
