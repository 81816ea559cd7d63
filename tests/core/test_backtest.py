"""The backtest is the core run bar by bar, with metrics of the model against naive on the same days."""

from __future__ import annotations

import numpy as np
import pytest

from models.backtest import run_backtest
from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.metrics import summarize
from tests.core.helpers import SMALL, fail_step_when, run

TICKERS = ("AAPL", "JPM", "GE", "NKE")
CONFIG = CoreConfig(model="arima", window=60, refit_every=10)


def test_backtest_records_equal_single_steps(sp500_bars: list[Bar], by_ticker: dict[str, list[Bar]]) -> None:
    bars = [b for b in sp500_bars if b.ticker in TICKERS][: 4 * 150]
    result = run_backtest(bars, CONFIG)
    expected_predictions, expected_scores, expected_features = [], [], {}
    for ticker in TICKERS:
        own = [b for b in bars if b.ticker == ticker]
        for stepped in run(own, CONFIG):
            expected_predictions.append(stepped.predictions[0])
            expected_scores += stepped.scores
            expected_features[(ticker, stepped.predictions[0]["as_of"])] = stepped.features
    key = lambda r: (r["ticker"], r["as_of"])  # noqa: E731
    assert sorted(result.predictions, key=key) == sorted(expected_predictions, key=key)
    assert sorted(result.scores, key=key) == sorted(expected_scores, key=key)
    emitted = [(p["as_of"], p["ticker"]) for p in result.predictions]
    assert emitted == [(b.date.isoformat(), b.ticker) for b in bars]
    for prediction, features in zip(result.predictions, result.features, strict=True):
        expected = expected_features[(prediction["ticker"], prediction["as_of"])]
        np.testing.assert_array_equal(features, expected)


def test_out_of_order_and_duplicate_bars_are_rejected_not_applied(by_ticker: dict[str, list[Bar]]) -> None:
    bars = by_ticker["GE"][:30]
    shuffled = [*bars[:10], bars[5], bars[9], *bars[10:]]
    result = run_backtest(shuffled, CONFIG)
    assert [(b.date, reason) for b, reason in result.rejected] == [(bars[5].date, "out_of_order"),
                                                                   (bars[9].date, "out_of_order")]
    assert result.predictions == run_backtest(bars, CONFIG).predictions


def test_a_bar_the_step_raises_on_is_rejected_and_the_rest_is_the_backtest_without_it(
        by_ticker: dict[str, list[Bar]], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    config = CoreConfig(model="arima", **SMALL)
    bars = sorted(by_ticker["AAPL"][:90] + by_ticker["JPM"][:90], key=lambda b: (b.date, b.ticker))
    bad = by_ticker["JPM"][70]
    without = run_backtest([b for b in bars if b is not bad], config)
    fail_step_when(monkeypatch, lambda batch, model: bad in batch)
    got = run_backtest(bars, config)
    assert got.rejected == [(bad, "step_failed")]
    assert caplog.text.count("the forecasting step failed on 1 bar(s), rejected as step_failed") == 1
    assert (got.predictions, got.scores) == (without.predictions, without.scores)


def test_metrics_compare_the_model_with_naive_on_the_same_days(sp500_bars: list[Bar]) -> None:
    result = run_backtest([b for b in sp500_bars if b.ticker in TICKERS][: 4 * 200], CONFIG)
    judged = [s for s in result.scores if not s["warmup"]]
    pooled = result.pooled
    assert pooled["n"] == len(judged) > 0
    actual = np.array([s["actual_close"] for s in judged])
    assert pooled["mae"] == pytest.approx(np.mean(np.abs([s["error"] for s in judged])))
    assert pooled["naive_mae"] == pytest.approx(np.mean(np.abs([s["naive_error"] for s in judged])))
    assert pooled["relative_mae"] == pytest.approx(pooled["mae"] / pooled["naive_mae"])
    assert pooled["naive_relative_mae"] == 1.0
    naive = np.array([s["naive_close"] for s in judged])
    assert pooled["naive_rmse"] == pytest.approx(np.sqrt(np.mean((actual - naive) ** 2)))
    assert 0.0 <= pooled["directional_accuracy"] <= 1.0
    assert set(result.per_ticker) == set(TICKERS)
    assert result.per_ticker["GE"] == summarize([s for s in judged if s["ticker"] == "GE"])
    ratios = [result.per_ticker[t]["relative_mae"] for t in TICKERS]
    assert result.panel["tickers"] == len(TICKERS)
    assert result.panel["tickers_beating_naive"] == sum(r < 1 for r in ratios)
    assert result.panel["relative_mae"] == pytest.approx(np.prod(ratios) ** (1 / len(ratios)))
    for label in ("80", "95"):
        assert pooled[f"coverage_{label}"] == np.mean([s[f"inside_{label}"] for s in judged])


def test_rows_join_each_prediction_with_its_outcome(by_ticker: dict[str, list[Bar]]) -> None:
    bars = by_ticker["NKE"][:70]
    rows = run_backtest(bars, CONFIG).rows()
    assert len(rows) == 70 and rows[-1]["actual_close"] is None
    assert rows[10]["actual_close"] == bars[11].close and rows[10]["actual_date"] == bars[11].date.isoformat()
    assert rows[10]["error"] == pytest.approx(bars[11].close - rows[10]["predicted_close"])
