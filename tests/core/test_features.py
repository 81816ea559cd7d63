"""Features and predictions of day t depend on bars up to t only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.features import FEATURE_NAMES
from tests.core.helpers import Reversal, run

CONFIG = dict(window=60, refit_every=10)


def _changed(bar: Bar) -> Bar:
    """The same day with a different close (and a range that still bounds it) and volume."""
    close = bar.close * 1.07
    return dataclasses.replace(bar, close=close, high=max(bar.high, close), volume=bar.volume * 3 + 1)


@pytest.mark.parametrize("model_name", ["arima", "external"])
@pytest.mark.parametrize("k", [5, 59, 64, 100, 139])
def test_changing_a_future_bar_changes_nothing_before_it(by_ticker: dict[str, list[Bar]], model_name: str,
                                                         k: int) -> None:
    bars = by_ticker["SBUX"][:140]
    config = CoreConfig(model=model_name, **CONFIG)
    model = (lambda: Reversal()) if model_name == "external" else (lambda: None)
    original = run(bars, config, model())
    altered = run([*bars[:k], _changed(bars[k]), *bars[k + 1 :]], config, model())
    for before, after in zip(original[:k], altered[:k], strict=True):
        assert after.predictions == before.predictions
        assert after.scores == before.scores
        np.testing.assert_array_equal(after.features, before.features)
    assert altered[k].features[FEATURE_NAMES.index("log_return")] != original[k].features[0]
    assert altered[k].predictions[0] != original[k].predictions[0]


def test_first_bar_has_no_changes_and_no_arima_surprise(by_ticker: dict[str, list[Bar]]) -> None:
    results = run(by_ticker["SBUX"][:70], CoreConfig(model="arima", **CONFIG))
    first = dict(zip(FEATURE_NAMES, results[0].features, strict=True))
    assert np.isnan([first["log_return"], first["gap_return"], first["volume_change"]]).all()
    assert first["hl_range"] > 0 and first["arima_residual"] == 0.0
    residual = FEATURE_NAMES.index("arima_residual")
    assert all(r.features[residual] == 0.0 for r in results[:60])  # fitted at bar 60 (index 59)
    assert all(r.features[residual] != 0.0 for r in results[60:])
    assert results[-1].state.feature_rows == 69
