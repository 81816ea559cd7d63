"""XGBoost on the causal features: a window flattened into one row of ``lookback x features``.

Trees need no feature scaling, so nothing is fitted outside the booster. Boosting stops early on
the validation windows (which come after the training ones in time).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> windows = rng.normal(size=(200, 2, 3))
>>> targets = 0.01 * windows[:, -1, 0]
>>> model = XGBoostWindowModel(lookback=2, n_estimators=50).fit(
...     windows[:150], targets[:150], windows[150:], targets[150:])
>>> model.predict_returns(windows[150:]).shape
(50,)
>>> XGBoostWindowModel(max_depth=0)
Traceback (most recent call last):
...
ValueError: max_depth must be a positive integer, got 0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.families.booster import DEFAULTS, fit_booster


def flatten(windows: np.ndarray) -> np.ndarray:
    """``[n, lookback, features] -> [n, lookback * features]``, oldest row first."""
    return windows.reshape(windows.shape[0], -1)


class XGBoostWindowModel:
    """Gradient-boosted trees predicting the next log-return from a flattened feature window.

    Parameters
    ----------
    **params
        Overrides of :data:`DEFAULTS`. ``lookback=1`` (the default) uses day t's features only.
    """

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown parameters for xgboost: {', '.join(sorted(unknown))}")
        self.params = {**DEFAULTS, **params}
        for key in ("lookback", "n_estimators", "max_depth", "early_stopping_rounds"):
            value = self.params[key]
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if not 0 < self.params["subsample"] <= 1:
            raise ValueError(f"subsample must be in (0, 1], got {self.params['subsample']!r}")
        self.name = "xgboost"
        self.version = ""  # the registry version, set when loaded from MLflow
        self.lookback: int = int(self.params["lookback"])
        self.booster: Any = None

    def fit(self, windows: np.ndarray, targets: np.ndarray,
            val_windows: np.ndarray, val_targets: np.ndarray) -> XGBoostWindowModel:
        """Fit on ``windows [n, lookback, features] -> targets [n]``, early-stopped on validation."""
        self.booster = fit_booster(flatten(windows), targets,
                                   flatten(val_windows), val_targets, self.params)
        return self

    def predict_returns(self, windows: np.ndarray) -> np.ndarray:
        """Predicted next-day log-returns ``[n]``."""
        if self.booster is None:
            raise RuntimeError("xgboost is not fitted")
        if windows.ndim != 3 or windows.shape[1] != self.lookback:
            raise ValueError(f"expected windows [n, {self.lookback}, features], got shape {windows.shape}")
        return self.booster.predict(flatten(windows)).astype("float64")

    def components(self) -> dict[str, Any]:
        """The native objects to store: the fitted ``XGBRegressor``."""
        return {"model": self.booster}

    @classmethod
    def from_components(cls, name: str, params: dict[str, Any],
                        components: dict[str, Any]) -> XGBoostWindowModel:
        """Rebuild a fitted model from stored parameters and its loaded booster."""
        model = cls(**params)
        model.booster = components["model"]
        return model
