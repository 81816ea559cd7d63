"""The core's defaults have one source, CoreConfig, which the system settings read theirs from."""

from __future__ import annotations

import dataclasses

import pytest

from forecaster.settings import DOCS, Settings, env_name, load, table
from models.core.config import SETTINGS, CoreConfig


def test_settings_take_the_core_defaults_and_docs_from_core_config() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    for name, spec in SETTINGS.items():
        assert defaults[name] == spec.default, name
        assert DOCS[name] == spec.metadata["doc"], name
    assert CoreConfig.from_settings(Settings()) == CoreConfig()


def test_core_settings_keep_their_variable_names_and_reach_the_core() -> None:
    assert sorted(env_name(name) for name in SETTINGS) == [
        "FORECASTER_ARIMA_ORDER", "FORECASTER_CALIBRATION_DECAY", "FORECASTER_FEATURE_HISTORY",
        "FORECASTER_HORIZONS", "FORECASTER_INTERVAL_CENTRE", "FORECASTER_INTERVAL_LEVELS", "FORECASTER_MODEL",
        "FORECASTER_REFIT_EVERY", "FORECASTER_WINDOW"]
    settings = load({"FORECASTER_ARIMA_ORDER": "1,1,1", "FORECASTER_WINDOW": "100",
                     "FORECASTER_INTERVAL_LEVELS": "0.5,0.9", "FORECASTER_MODEL": "naive",
                     "FORECASTER_HORIZONS": "1,5,20"})
    config = CoreConfig.from_settings(settings)
    assert (config.order, config.window, config.interval_levels, config.model, config.horizons) == (
        (1, 1, 1), 100, (0.5, 0.9), "naive", (1, 5, 20))


@pytest.mark.parametrize("horizons", [(), (0,), (1, 1), (5, 1), (1, 261), (1.0,), (True,)])
def test_horizons_that_are_not_increasing_trading_days_are_refused(horizons: tuple) -> None:
    with pytest.raises(ValueError, match=r"^horizons must be strictly increasing whole numbers of trading "
                                         r"days in 1\.\.260; got "):
        CoreConfig(horizons=horizons)


@pytest.mark.parametrize(("change", "says"), [
    ({"horizons": [1, 5]}, "horizons must be a tuple"),
    ({"order": [2, 1, 0]}, "order must be a tuple"),
    ({"window": 60.5}, "window must be a whole number"),
    ({"feature_history": True}, "feature_history must be a whole number"),
    ({"order": (True, 1, 0), "window": 60}, "order must be three non-negative integers"),
    ({"calibration_rate": float("nan")}, "calibration_rate must be a finite number"),
    ({"interval_df": float("inf")}, "interval_df must be a finite number"),
], ids=str)
def test_values_a_step_cannot_use_are_refused_when_configured(change: dict, says: str) -> None:
    # Each was taken, and the first step raised (a list is unhashable, a float no window size) or made
    # NaN intervals for good.
    with pytest.raises(ValueError, match=f"^{says}"):
        CoreConfig(**change)


def test_every_core_field_is_documented_and_settings_show_the_core_docs() -> None:
    assert all(f.metadata.get("doc") for f in dataclasses.fields(CoreConfig))
    shown = {variable: (default, doc) for variable, default, doc in table()}
    assert shown["FORECASTER_ARIMA_ORDER"] == ("2,1,0", SETTINGS["arima_order"].metadata["doc"])
