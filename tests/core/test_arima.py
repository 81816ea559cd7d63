"""The incremental ARIMA equals statsmodels with the same parameters, and bad fits are survived."""

from __future__ import annotations

import datetime as dt
import warnings
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from statsmodels.tsa.arima.model import ARIMA

from models.core.arima import Arima, ArimaFitError, _stationary
from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.features import FEATURE_NAMES
from models.core.state import TickerState
from models.core.step import refit, step
from tests.core.helpers import run

RESIDUAL = FEATURE_NAMES.index("arima_residual")


@pytest.mark.parametrize("order", [(2, 1, 0), (1, 1, 1)])
def test_core_forecasts_equal_statsmodels_extend_between_refits(by_ticker: dict[str, list[Bar]],
                                                                 order: tuple[int, int, int]) -> None:
    bars = by_ticker["AAPL"][:420]
    config = CoreConfig(model="arima", order=order)
    results = run(bars, config)
    refits = [k for k, r in enumerate(results) if r.refit == "ok"]
    assert refits[:3] == [251, 272, 293]  # first fit when the window fills, then every 21 bars
    log_close = np.log([b.close for b in bars])
    checked = 0
    for start, stop in pairwise(refits):
        state = results[start].state
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fixed = ARIMA(state.log_closes, order=order).filter(state.arima_params)
            extended = fixed.extend(log_close[start + 1 : stop + 1])
        d = order[1]
        np.testing.assert_allclose(state.arima_state, fixed.predicted_state[d:, -1], rtol=0, atol=1e-8)
        np.testing.assert_allclose(state.arima_cov, fixed.predicted_state_cov[d:, d:, -1], rtol=0, atol=1e-8)
        ours = np.log([r.predictions[0]["predicted_close"] for r in results[start:stop]])
        np.testing.assert_allclose(ours, extended.forecasts[0], rtol=0, atol=1e-8)
        np.testing.assert_allclose(log_close[start + 1 : stop + 1] - ours, extended.forecasts_error[0],
                                   rtol=0, atol=1e-8)
        if order[2] == 0:  # an AR filter is exact; statsmodels stops updating an ARMA's converged P
            residuals = [r.features[RESIDUAL] for r in results[start + 1 : stop + 1]]
            np.testing.assert_allclose(residuals, extended.standardized_forecasts_error[0], rtol=0, atol=1e-8)
        checked += stop - start
    assert checked >= 100


def test_fit_recovers_a_known_ar_process() -> None:
    rng = np.random.default_rng(7)
    w = np.zeros(5000)
    for t in range(2, w.size):
        w[t] = 0.5 * w[t - 1] - 0.3 * w[t - 2] + rng.normal(scale=0.01)
    params = Arima((2, 1, 0)).fit(np.cumsum(w))
    np.testing.assert_allclose(params, [0.5, -0.3, 1e-4], rtol=0.06)


def test_fit_refuses_a_constant_window_and_an_explosive_one() -> None:
    arima = Arima((1, 1, 0))
    with pytest.raises(ArimaFitError, match="does not move"):
        arima.fit(np.full(50, 3.0))
    with pytest.raises(ArimaFitError, match="not stationary"):
        arima.fit(np.cumsum(1.2 ** np.arange(50.0)))


def test_a_failed_refit_keeps_the_parameters_and_is_counted() -> None:
    rng = np.random.default_rng(3)
    closes = np.r_[100 * np.exp(np.cumsum(rng.normal(scale=0.01, size=60))), np.full(60, 90.0)]
    day = dt.date(2020, 1, 1)
    bars = [Bar("FLAT", day + dt.timedelta(days=k), c, c, c, c, 1000.0) for k, c in enumerate(closes)]
    results = run(bars, CoreConfig(model="arima", window=40, refit_every=10))
    outcomes = [r.refit for r in results if r.refit]
    assert outcomes[:3] == ["ok", "ok", "ok"] and outcomes[-1] == "failed"
    last_good = next(r.state for r in reversed(results) if r.refit == "ok")
    final = results[-1].state
    assert final.failed_refits == outcomes.count("failed") and final.refits == outcomes.count("ok")
    np.testing.assert_array_equal(final.arima_params, last_good.arima_params)
    assert all(np.isfinite(r.predictions[0]["predicted_close"]) for r in results)


@given(st.lists(st.floats(-2.5, 2.5), min_size=1, max_size=5))
def test_stationarity_check_agrees_with_the_polynomial_roots(coefs: list[float]) -> None:
    roots = np.roots(np.r_[1.0, -np.array(coefs)])
    margin = np.abs(np.abs(roots) - 1.0).min() if roots.size else 1.0
    if margin > 1e-9:  # leave roots on the unit circle to rounding
        assert _stationary(coefs) == bool(np.all(np.abs(roots) < 1.0))


def test_refit_on_demand_uses_the_current_window_and_leaves_the_input_alone(
        by_ticker: dict[str, list[Bar]]) -> None:
    config = CoreConfig(model="arima", window=60, refit_every=10)
    results = run(by_ticker["GE"][:75], config)
    state = results[-1].state  # fitted at bar 70, five bars ago
    before = state.to_bytes()
    refitted, outcome = refit(state, config)
    assert outcome == "ok" and state.to_bytes() == before
    assert (refitted.refits, refitted.since_refit) == (state.refits + 1, 0)
    np.testing.assert_array_equal(refitted.arima_params, Arima(config.order).fit(state.log_closes))
    assert refitted.pending == state.pending
    with pytest.raises(ValueError, match="window has 30 of 60 bars"):
        refit(results[29].state, config)


def test_refit_on_demand_that_fails_is_counted_and_keeps_the_parameters() -> None:
    config = CoreConfig(model="arima", window=40, refit_every=1000)  # only the first fit runs itself
    rng = np.random.default_rng(4)
    closes = np.r_[50 * np.exp(np.cumsum(rng.normal(scale=0.01, size=40))), np.full(40, 50.0)]
    day = dt.date(2021, 1, 1)
    bars = [Bar("X", day + dt.timedelta(days=k), c, c, c, c, 1.0) for k, c in enumerate(closes)]
    results = run(bars, config)
    state = results[-1].state  # fitted once at bar 40; its window is now constant
    refitted, outcome = refit(state, config)
    assert outcome == "failed" and refitted.failed_refits == state.failed_refits + 1
    np.testing.assert_array_equal(refitted.arima_params, state.arima_params)


@pytest.mark.parametrize("order", [(1, 1, 1), (3, 1, 0), (2, 2, 0)])
def test_a_state_of_another_order_is_refitted_in_the_configured_order_at_once(
        by_ticker: dict[str, list[Bar]], order: tuple[int, int, int]) -> None:
    # FORECASTER_ARIMA_ORDER changed under a running deployment. (1, 1, 1) has (2, 1, 0)'s array
    # sizes: read in its layout, phi_2 would have been taken for theta_1 until the next refit.
    bars = by_ticker["GE"][:76]
    before = TickerState.from_bytes(run(bars[:75], CoreConfig(model="arima", window=60, refit_every=10))[-1]
                                    .state.to_bytes())  # fitted at bar 70, five bars ago, in (2, 1, 0)
    assert before.arima_order == (2, 1, 0)
    assert step(before, bars[75], CoreConfig(model="arima", window=60, refit_every=10)).refit is None
    after = step(before, bars[75], CoreConfig(model="arima", order=order, window=60, refit_every=10))
    assert after.refit == "ok" and after.state.arima_order == order and after.state.since_refit == 0
    arima, window = Arima(order), after.state.log_closes
    params = arima.fit(window)
    a, cov = arima.initial_state(params, window)
    np.testing.assert_array_equal(after.state.arima_params, params)
    np.testing.assert_array_equal(after.state.arima_state, a)
    np.testing.assert_array_equal(after.state.arima_cov, cov)
    mean = arima.forecast(params[None], a[None], window[None, window.size - order[1]:])[0, 0]
    assert after.predictions[0]["predicted_close"] == pytest.approx(np.exp(mean), rel=1e-12)


@pytest.mark.parametrize("order", [(2, 1, 0), (1, 1, 1), (1, 2, 0)])
def test_multi_step_means_equal_statsmodels_forecasts(by_ticker: dict[str, list[Bar]],
                                                      order: tuple[int, int, int]) -> None:
    levels = np.log([b.close for b in by_ticker["JPM"][:252]])
    arima = Arima(order)
    params = arima.fit(levels)
    a, _ = arima.initial_state(params, levels)
    ours = arima.forecast(params[None], a[None], levels[None, levels.size - order[1]:], steps=20)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ARIMA(levels, order=order).filter(params).forecast(steps=20)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-8)

